//! `cargo xtask up` / `down`: the whole shop on one machine.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::{
    install::{Tools, run},
    procs, root,
    services::{self, GATEWAY_PORT, Ports, ServiceEnv},
    stack::{Persistence, Stack},
    step,
};

fn stack_dir() -> PathBuf {
    root().join(".stack")
}

pub fn up(args: &[String]) -> Result<()> {
    let mut release = false;
    let mut detach = false;
    for arg in args {
        match arg.as_str() {
            "--release" => release = true,
            "--detach" | "-d" => detach = true,
            other => bail!("unknown option {other:?} for `up` (expected --release, --detach)"),
        }
    }
    let dir = stack_dir();
    if let Some(running) = Stack::load(&dir)
        && running.any_alive()
    {
        bail!(
            "a stack is already running from {} (gateway http://127.0.0.1:{GATEWAY_PORT}); `cargo xtask down` stops it",
            dir.display()
        );
    }
    if procs::port_in_use(GATEWAY_PORT) {
        bail!("port {GATEWAY_PORT} is taken by another program; the gateway needs it");
    }

    let tools = Tools::ensure()?;
    let bin = services::build(release)?;
    let signing_key = dir.join("auth/signing-key.pem");
    if !signing_key.exists() {
        step("generating the auth signing key (.stack/auth/signing-key.pem)");
        std::fs::create_dir_all(signing_key.parent().expect("has a parent"))?;
        run(
            Command::new(bin.join("auth"))
                .arg("generate-key")
                .arg(&signing_key),
            "auth generate-key",
        )?;
    }
    let (admin_email, admin_password, fresh_password) = admin_credentials(&dir)?;

    let mut stack = Stack::start_backends(&dir, &tools, Persistence::Keep)?;
    let ports = Ports::fixed();
    let env = ServiceEnv {
        endpoints: &stack.endpoints.clone(),
        ports: &ports,
        signing_key: &signing_key,
        admin: Some((&admin_email, &admin_password)),
        overrides: Vec::new(),
    };
    let started = services::start_shop(&mut stack, &tools, &bin, &env)
        .and_then(|()| stack.save(json!({ "gateway": GATEWAY_PORT })));
    if let Err(e) = started {
        step("stopping what started");
        stack.stop();
        return Err(e);
    }

    let e = &stack.endpoints;
    println!("\nStorefront is up.\n");
    println!("  shop          http://127.0.0.1:{GATEWAY_PORT}/");
    println!("  admin         http://127.0.0.1:{GATEWAY_PORT}/admin");
    println!("  API           http://127.0.0.1:{GATEWAY_PORT}/api/…  (docs/api/)");
    for service in services::built() {
        println!(
            "  {:<13} {}  (/healthz /readyz /metrics)",
            service.name,
            ports.url(service)
        );
    }
    println!("  MongoDB       {}", e.mongodb_uri);
    println!("  Kafka         {}", e.kafka_bootstrap);
    println!("  Redis         {}", e.redis_url);
    println!("  S3            {}", e.s3_endpoint);
    println!("  Stripe        {}", e.stripe_url);
    println!("  logs          {}/logs/", dir.display());
    if fresh_password {
        println!("\n  admin login   {admin_email} / {admin_password}");
        println!("                (shown once; kept in .stack/admin.json)");
    } else {
        println!(
            "\n  admin login   {admin_email} (password in .stack/admin.json or STOREFRONT_ADMIN_PASSWORD)"
        );
    }
    if detach {
        println!("\nRunning in the background; `cargo xtask down` stops it.");
        return Ok(());
    }
    println!("\nCtrl-C stops everything.");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut check = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = check.tick() => {
                    for proc in &stack.procs {
                        if !procs::alive(proc.pid) {
                            eprintln!("!! {} stopped; see {}", proc.name, proc.log.display());
                        }
                    }
                }
            }
        }
    });
    step("stopping");
    stack.stop();
    Ok(())
}

/// `STOREFRONT_ADMIN_EMAIL`/`STOREFRONT_ADMIN_PASSWORD`, else the saved pair, else a new one.
/// The bool says whether the password was just generated (and so is printed).
fn admin_credentials(dir: &std::path::Path) -> Result<(String, String, bool)> {
    if let (Ok(email), Ok(password)) = (
        std::env::var("STOREFRONT_ADMIN_EMAIL"),
        std::env::var("STOREFRONT_ADMIN_PASSWORD"),
    ) {
        return Ok((email, password, false));
    }
    let file = dir.join("admin.json");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let saved: serde_json::Value =
            serde_json::from_str(&text).context("read .stack/admin.json")?;
        if let (Some(email), Some(password)) = (saved["email"].as_str(), saved["password"].as_str())
        {
            return Ok((email.to_owned(), password.to_owned(), false));
        }
    }
    let email = "admin@storefront.local".to_owned();
    let password = format!("sf-{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&json!({ "email": email, "password": password }))?,
    )?;
    Ok((email, password, true))
}

pub fn down() -> Result<()> {
    let dir = stack_dir();
    match Stack::load(&dir) {
        Some(stack) if stack.any_alive() => {
            step("stopping the stack");
            stack.stop();
            Ok(())
        }
        Some(stack) => {
            stack.stop();
            println!("nothing was running");
            Ok(())
        }
        None => {
            println!("nothing was running");
            Ok(())
        }
    }
}
