//! `cargo xtask`: the one-machine Storefront.
//!
//! - `up [--release] [--detach]`: install what is missing, start the backends, the services and the
//!   gateway on http://127.0.0.1:8080, create the admin account, wait until everything is ready;
//!   Ctrl-C stops it all (or `down` stops a detached one).
//! - `down`: stop a detached `up`.
//! - `test [ARGS…]`: install, start the backends for tests, run the whole suite with nextest, then
//!   the cluster profile's tests on the single-node cluster.
//! - `bench …`: load a part of the shop and print the figures.
//! - `cluster up|down|status`, `images`: a single-node Kubernetes on this machine and the images
//!   for it, without Docker.
//! - `install`: only install what the above need.
//! - `schemas`: regenerate `docs/events/` from the event types.
//! - `crds`: regenerate `crds/storefront.yaml` from the operator's types.
//! - `openapi`: regenerate `docs/api/openapi.json` from the services' documents.

mod bench;
mod cluster;
mod faults;
mod images;
mod install;
mod pki;
mod procs;
mod services;
mod stack;
mod test;
mod up;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

const USAGE: &str = "usage: cargo xtask <command>

  up [--release] [--detach]   run the whole shop on http://127.0.0.1:8080 (Ctrl-C stops it)
  down                        stop a detached `up`
  test [NEXTEST ARGS…]        start the test backends and run every test
  bench auth|catalog|checkout|notify|operator|cluster
                              benchmarks (docs in README.md)
  cluster up|down|status      a single-node Kubernetes on this machine (no Docker)
  images [--release] [--registry R] [--tag T]
                              build every image and import it into that cluster
  install                     install what the stack and the tests need
  schemas                     regenerate docs/events/ from the event types
  crds                        regenerate crds/storefront.yaml from the operator's types
  openapi                     regenerate docs/api/openapi.json from the services' documents";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // A CI build starts from nothing and is thrown away: incremental state would only cost
        // disk (gigabytes) and time. Set before any thread starts; every cargo run here inherits it.
        // SAFETY: single-threaded at this point.
        unsafe { std::env::set_var("CARGO_INCREMENTAL", "0") };
    }
    let result = match args.first().map(String::as_str) {
        Some("up") => up::up(&args[1..]),
        Some("down") => up::down(),
        Some("cluster") => cluster::main(&args[1..]),
        Some("images") => images::main(&args[1..]),
        Some("test") => test::test(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("install") => install::Tools::ensure()
            .and_then(|_| install::Browser::ensure())
            .and_then(|_| install::ClusterTools::ensure())
            .map(|_| ()),
        Some("schemas") => test::schemas(),
        Some("crds") => test::crds(),
        Some("openapi") => test::openapi(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// A short progress line.
pub fn step(message: impl std::fmt::Display) {
    eprintln!("==> {message}");
}
