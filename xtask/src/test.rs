//! `cargo xtask test`: the whole suite against real backends.
//!
//! Builds the tests first (a compile error needs no backends), starts one set of backends with
//! empty storage under `target/test-stack/`, runs every test with nextest (tests isolate
//! themselves by database name, topic prefix and key namespace), stops the backends, and exits
//! non-zero on any failure — including a backend that cannot be installed or started.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{
    install::Tools,
    root,
    services::target_dir,
    stack::{Persistence, S3_ACCESS_KEY, S3_SECRET_KEY, STRIPE_SECRET_KEY, Stack},
    step,
};

fn nextest() -> Result<()> {
    let installed = Command::new(env!("CARGO"))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        step("installing cargo-nextest");
        crate::install::run(
            Command::new(env!("CARGO")).args(["install", "cargo-nextest", "--locked"]),
            "cargo install cargo-nextest",
        )?;
    }
    Ok(())
}

pub fn test(args: &[String]) -> Result<()> {
    let tools = Tools::ensure()?;
    nextest()?;
    step("building the tests");
    let built = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-run",
        ])
        .status()
        .context("run cargo nextest")?;
    if !built.success() {
        bail!("the tests do not build");
    }

    let dir = target_dir().join("test-stack");
    let _ = std::fs::remove_dir_all(&dir);
    let stack = Stack::start_backends(&dir, &tools, Persistence::Ephemeral)?;
    let e = &stack.endpoints;
    step("running the tests");
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ])
        .args(args)
        .env("STOREFRONT_TEST_MONGODB_URI", &e.mongodb_uri)
        .env("STOREFRONT_TEST_KAFKA_BOOTSTRAP", &e.kafka_bootstrap)
        .env("STOREFRONT_TEST_REDIS_URL", &e.redis_url)
        .env("STOREFRONT_TEST_S3_ENDPOINT", &e.s3_endpoint)
        .env("STOREFRONT_TEST_S3_ACCESS_KEY", S3_ACCESS_KEY)
        .env("STOREFRONT_TEST_S3_SECRET_KEY", S3_SECRET_KEY)
        .env("STOREFRONT_TEST_STRIPE_URL", &e.stripe_url)
        .env("STOREFRONT_TEST_STRIPE_SECRET_KEY", STRIPE_SECRET_KEY)
        .status();
    step("stopping the test backends");
    stack.stop();
    let status = status.context("run cargo nextest")?;
    if !status.success() {
        bail!("tests failed (backend logs: {}/logs/)", dir.display());
    }
    Ok(())
}

/// `cargo xtask schemas`: rewrite `docs/events/` from the event types.
pub fn schemas() -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "test",
            "-p",
            "storefront-events",
            "--test",
            "contracts",
            "docs_events_schemas_are_current",
        ])
        .env("STOREFRONT_BLESS", "1")
        .status()?;
    if !status.success() {
        bail!("could not regenerate the schemas");
    }
    step("docs/events/ regenerated");
    Ok(())
}
