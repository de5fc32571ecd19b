//! `cargo xtask bench auth`: the auth service under load through the gateway, release build, on
//! the same real backends as tests (fresh, under `target/bench-stack/`).
//!
//! The load generator runs on one thread in this process, on the same 2 cores as the service,
//! nginx and the backends: the figures are for this whole machine, not for the service alone.

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::{
    install::{Tools, run},
    procs,
    services::{self, ServiceEnv, target_dir},
    stack::{Persistence, Stack},
    step,
};

const CONCURRENCY: usize = 32;
const DURATION: Duration = Duration::from_secs(10);

pub fn bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("auth") => auth(),
        _ => bail!("usage: cargo xtask bench auth"),
    }
}

fn auth() -> Result<()> {
    for service in services::built() {
        if procs::port_in_use(service.port) {
            bail!(
                "port {} ({}) is in use: stop `cargo xtask up` first",
                service.port,
                service.name
            );
        }
    }
    let tools = Tools::ensure()?;
    let bin = services::build(true)?;
    let dir = target_dir().join("bench-stack");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("signing-key.pem");
    run(
        Command::new(bin.join("auth")).arg("generate-key").arg(&key),
        "auth generate-key",
    )?;

    let mut stack = Stack::start_backends(&dir, &tools, Persistence::Ephemeral)?;
    let result = (|| {
        let env = ServiceEnv {
            endpoints: &stack.endpoints.clone(),
            signing_key: &key,
            admin: None,
            // One client address does all the sign-ins here: lift the per-address limit.
            overrides: vec![
                ("SIGNIN_MAX_PER_IP".into(), "100000000".into()),
                ("RUST_LOG".into(), "warn".into()),
            ],
        };
        services::start(&mut stack, &bin, &env)?;
        let gateway = procs::free_port()?;
        services::start_gateway(&mut stack, &tools, gateway)?;
        let auth_pid = stack
            .procs
            .iter()
            .find(|p| p.name == "auth")
            .context("auth started")?
            .pid;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(load(gateway, auth_pid))
    })();
    stack.stop();
    result
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Run {
    ok: usize,
    failed: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn print(&self, name: &str) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "  {name:<12} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok, {} failed, {} connections, {:?})",
            self.ok as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.ok,
            self.failed,
            CONCURRENCY,
            DURATION,
        );
    }
}

/// `CONCURRENCY` workers sending `request(i)` in a loop for `DURATION`.
async fn hammer<F, Fut>(request: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|i| {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
                while started.elapsed() < DURATION {
                    let t = Instant::now();
                    if request(i).await {
                        ok += 1;
                        latencies.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    let mut run = Run {
        ok: 0,
        failed: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        if let Ok((ok, failed, latencies)) = worker.await {
            run.ok += ok;
            run.failed += failed;
            run.latencies.extend(latencies);
        }
    }
    run.elapsed = started.elapsed();
    run
}

async fn load(gateway: u16, auth_pid: u32) -> Result<()> {
    let base = format!("http://127.0.0.1:{gateway}/api/users");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(auth_pid, "VmRSS:");

    step(format!("creating {CONCURRENCY} users"));
    let mut tokens = Vec::new();
    for i in 0..CONCURRENCY {
        let response = client
            .post(format!("{base}/signup"))
            .json(&json!({ "email": format!("bench{i}@example.com"), "password": "bench-password-1", "name": format!("Bench {i}") }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "signup failed: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let body: serde_json::Value = response.json().await?;
        tokens.push(body["access_token"].as_str().unwrap_or_default().to_owned());
    }

    step(format!(
        "signin: {CONCURRENCY} connections for {DURATION:?}"
    ));
    let signin = {
        let (client, base) = (client.clone(), base.clone());
        hammer(move |i| {
            let request = client
                .post(format!("{base}/signin"))
                .json(&json!({ "email": format!("bench{i}@example.com"), "password": "bench-password-1" }));
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };
    let rss_after_signin = rss_kib(auth_pid, "VmHWM:");

    step(format!(
        "currentuser: {CONCURRENCY} connections for {DURATION:?}"
    ));
    let current = {
        let (client, base) = (client.clone(), base.clone());
        let tokens = Arc::new(tokens);
        hammer(move |i| {
            let request = client
                .get(format!("{base}/currentuser"))
                .bearer_auth(&tokens[i]);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };
    let peak_rss = rss_kib(auth_pid, "VmHWM:");

    println!("\nauth through the gateway (release build; load generator on the same 2 cores):");
    signin.print("signin");
    current.print("currentuser");
    println!(
        "  auth RSS     idle {:.1} MiB   peak during signin {:.1} MiB   peak overall {:.1} MiB",
        idle_rss as f64 / 1024.0,
        rss_after_signin as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    println!("  targets      currentuser >= 5000 req/s, idle RSS <= 20 MiB");
    Ok(())
}
