//! `cargo xtask bench auth|catalog`: a service under load through the gateway, release build, on
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
        Some("auth") => with_stack(
            // One client address does all the sign-ins here: lift the per-address limit.
            vec![("SIGNIN_MAX_PER_IP".into(), "100000000".into())],
            |gateway, stack| async move { auth(gateway, pid(&stack, "auth")?).await },
        ),
        Some("catalog") => with_stack(Vec::new(), |gateway, stack| async move {
            catalog(
                gateway,
                pid(&stack, "products")?,
                &stack.endpoints.mongodb_uri,
            )
            .await
        }),
        _ => bail!("usage: cargo xtask bench auth|catalog"),
    }
}

fn pid(stack: &Stack, name: &str) -> Result<u32> {
    Ok(stack
        .procs
        .iter()
        .find(|p| p.name == name)
        .with_context(|| format!("{name} started"))?
        .pid)
}

/// Builds the services (release), starts fresh backends, the services (with `overrides`), the
/// demo catalog and the gateway, runs `load(gateway port, stack)`, and stops everything.
fn with_stack<F, Fut>(overrides: Vec<(String, String)>, load: F) -> Result<()>
where
    F: FnOnce(u16, Stack) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
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
    let mut overrides = overrides;
    overrides.push(("RUST_LOG".into(), "warn".into()));
    let started = (|| {
        let env = ServiceEnv {
            endpoints: &stack.endpoints.clone(),
            signing_key: &key,
            admin: Some((BENCH_ADMIN.0, BENCH_ADMIN.1)),
            overrides,
        };
        services::start(&mut stack, &bin, &env)?;
        services::seed_demo(&bin, &env)?;
        services::register_stripe_webhook(&env.endpoints.stripe_url)?;
        let gateway = procs::free_port()?;
        services::start_gateway(&mut stack, &tools, gateway)?;
        Ok::<_, anyhow::Error>(gateway)
    })();
    let gateway = match started {
        Ok(gateway) => gateway,
        Err(e) => {
            stack.stop();
            return Err(e);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let view = Stack {
        dir: stack.dir.clone(),
        procs: stack.procs.clone(),
        endpoints: stack.endpoints.clone(),
    };
    let result = runtime.block_on(load(gateway, view));
    stack.stop();
    result
}

const BENCH_ADMIN: (&str, &str) = ("bench-admin@example.com", "bench-admin-password-1");

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
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

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
            self.rate(),
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

async fn auth(gateway: u16, auth_pid: u32) -> Result<()> {
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

/// The catalog's reads through the gateway beside the raw driver's find-by-id on the same MongoDB.
async fn catalog(gateway: u16, products_pid: u32, mongodb_uri: &str) -> Result<()> {
    let base = format!("http://127.0.0.1:{gateway}/api/products");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(products_pid, "VmRSS:");
    let page: serde_json::Value = client.get(&base).send().await?.json().await?;
    let ids: Vec<String> = page["items"]
        .as_array()
        .context("a product list")?
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    if ids.is_empty() {
        bail!("the demo catalog is empty: {page}");
    }
    let ids = Arc::new(ids);

    step(format!(
        "GET /api/products/{{id}}: {CONCURRENCY} connections for {DURATION:?}"
    ));
    let by_id = {
        let (client, base, ids) = (client.clone(), base.clone(), ids.clone());
        hammer(move |i| {
            let request = client.get(format!("{base}/{}", ids[i % ids.len()]));
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };
    step(format!(
        "GET /api/products (first page): {CONCURRENCY} connections for {DURATION:?}"
    ));
    let list = {
        let (client, base) = (client.clone(), base.clone());
        hammer(move |_| {
            let request = client.get(&base);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };
    let peak_rss = rss_kib(products_pid, "VmHWM:");

    step(format!(
        "raw mongodb driver find-by-id: {CONCURRENCY} tasks for {DURATION:?}"
    ));
    let mongo = mongodb::Client::with_uri_str(mongodb_uri).await?;
    let collection = mongo
        .database(&format!("{}_products", services::TOPIC_PREFIX))
        .collection::<mongodb::bson::Document>("products");
    let raw = {
        let ids = ids.clone();
        hammer(move |i| {
            let (collection, id) = (collection.clone(), ids[i % ids.len()].clone());
            async move {
                collection
                    .find_one(mongodb::bson::doc! { "_id": id })
                    .await
                    .is_ok_and(|found| found.is_some())
            }
        })
        .await
    };

    println!("\ncatalog through the gateway (release build; load generator on the same 2 cores):");
    by_id.print("product");
    list.print("first page");
    raw.print("raw find_id");
    println!(
        "  product/raw  {:.0}% of the raw driver's find-by-id rate (target >= 90%)",
        by_id.rate() / raw.rate().max(1.0) * 100.0
    );
    println!(
        "  products RSS idle {:.1} MiB   peak {:.1} MiB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    Ok(())
}
