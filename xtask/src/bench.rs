//! `cargo xtask bench auth|catalog|checkout|notify`: a service under load through the gateway, release build, on
//! the same real backends as tests (fresh, under `target/bench-stack/`). `bench operator`: the
//! operator against a real Kubernetes API server with those backends.
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
    install::{self, ApiServerTools, ManifestTools, Tools, run},
    procs,
    services::{self, Ports, ServiceEnv, target_dir},
    stack::{Persistence, Stack},
    step,
};

mod checkout;

const CONCURRENCY: usize = 32;
const DURATION: Duration = Duration::from_secs(10);

pub fn bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("auth") => with_stack(
            // One client address does all the sign-ins here: lift the per-address limit.
            vec![("SIGNIN_MAX_PER_IP".into(), "100000000".into())],
            |ports, stack| async move { auth(ports.gateway, pid(&stack, "auth")?).await },
        ),
        Some("catalog") => with_stack(Vec::new(), |ports, stack| async move {
            catalog(
                ports.gateway,
                pid(&stack, "products")?,
                &stack.endpoints.mongodb_uri,
            )
            .await
        }),
        Some("checkout") => {
            let load = checkout::Load::parse(&args[1..])?;
            with_stack(
                vec![("SIGNIN_MAX_PER_IP".into(), "100000000".into())],
                move |ports, stack| async move { checkout::run(&ports, &stack, load).await },
            )
        }
        Some("notify") => {
            let sockets = match args.get(1..) {
                Some([flag, n]) if flag == "--sockets" => n.parse().context("--sockets N")?,
                Some([]) | None => 10_000,
                _ => bail!("usage: cargo xtask bench notify [--sockets N]"),
            };
            with_stack(Vec::new(), move |ports, stack| async move {
                notify(&stack, &ports, sockets).await
            })
        }
        Some("operator") => {
            let shops = match args.get(1..) {
                Some([flag, n]) if flag == "--shops" => n.parse().context("--shops N")?,
                Some([]) | None => 20,
                _ => bail!("usage: cargo xtask bench operator [--shops N]"),
            };
            operator(shops)
        }
        Some("cluster") => crate::test::bench_cluster(),
        _ => bail!(
            "usage: cargo xtask bench auth|catalog|checkout [{}]|notify [--sockets N]|operator [--shops N]|cluster",
            checkout::USAGE
        ),
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

/// Builds the services (release), starts fresh backends, the services (with `overrides`, on free
/// ports), the demo catalog and the gateway, runs `load(ports, stack)`, and stops everything.
fn with_stack<F, Fut>(overrides: Vec<(String, String)>, load: F) -> Result<()>
where
    F: FnOnce(Ports, Stack) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut tools = Tools::ensure()?;
    // The broker built from source against glibc (the fault test's build, here with its memory
    // storage) rather than the wheel's static musl binary: the same tansu 0.6.0, which under the
    // checkout load spends ~40 % less CPU (30 against 50 % of a core at 7.7 orders/s; the wheel's
    // time goes to musl's allocator, its munmaps and their TLB shootdowns), so the figures
    // measure the shop rather than the C library the broker was linked with.
    tools.tansu = install::tansu_sqlite()?;
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
    // Quiet by default (logging costs CPU the figures would count); `STOREFRONT_BENCH_LOG` (a
    // `RUST_LOG` for the services, e.g. `info,storefront_kit=debug`) to look inside.
    let log = std::env::var("STOREFRONT_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    overrides.push(("RUST_LOG".into(), log));
    let ports = Ports::free()?;
    let env = ServiceEnv {
        endpoints: &stack.endpoints.clone(),
        ports: &ports,
        signing_key: &key,
        admin: Some((BENCH_ADMIN.0, BENCH_ADMIN.1)),
        overrides,
    };
    if let Err(e) = services::start_shop(&mut stack, &tools, &bin, &env) {
        stack.stop();
        return Err(e);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let view = Stack {
        dir: stack.dir.clone(),
        procs: stack.procs.clone(),
        endpoints: stack.endpoints.clone(),
    };
    let result = runtime.block_on(load(ports.clone(), view));
    stack.stop();
    result
}

/// The operator against a real API server (and the real backends for its external resources):
/// no services run, only the controller, in the load generator's process.
fn operator(shops: usize) -> Result<()> {
    let tools = Tools::ensure()?;
    let manifests = ManifestTools::ensure()?;
    let api_server = ApiServerTools::ensure()?;
    let load = build_example("storefront-operator", "operator_load")?;
    let dir = target_dir().join("bench-stack");
    let _ = std::fs::remove_dir_all(&dir);
    let mut stack = Stack::start_backends(&dir, &tools, Persistence::Ephemeral)?;
    let result = (|| {
        let admin = stack.start_secured_mongodb(&tools)?;
        let kubeconfig = stack.start_api_server(&api_server, &manifests.kubectl)?;
        step(format!(
            "operator: {shops} Storefronts in {shops} namespaces at once, then 60 s of steady state"
        ));
        let e = &stack.endpoints;
        let status = Command::new(&load)
            .env("RUST_LOG", "warn")
            .env("BENCH_KUBECONFIG", &kubeconfig)
            .env("BENCH_SHOPS", shops.to_string())
            .env("BENCH_STEADY_SECONDS", "60")
            .env("BENCH_KAFKA", &e.kafka_bootstrap)
            .env("BENCH_S3_ENDPOINT", &e.s3_endpoint)
            .env("BENCH_S3_ACCESS_KEY", crate::stack::S3_ACCESS_KEY)
            .env("BENCH_S3_SECRET_KEY", crate::stack::S3_SECRET_KEY)
            .env("BENCH_MONGODB_ADMIN_URI", admin)
            .status()?;
        if !status.success() {
            bail!("the operator bench failed");
        }
        Ok(())
    })();
    stack.stop();
    result
}

/// Builds a load generator (an example of `package`, release) and answers its path.
fn build_example(package: &str, example: &str) -> Result<std::path::PathBuf> {
    step(format!("building the load generator {example} (release)"));
    let built = Command::new(env!("CARGO"))
        .current_dir(crate::root())
        .args(["build", "--release", "-p", package, "--example", example])
        .status()?;
    if !built.success() {
        bail!("the load generator {example} does not build");
    }
    Ok(target_dir().join("release/examples").join(example))
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

/// One notifications replica of its own (own database and topic prefix, so only it sees the
/// bench's events) with `sockets` sockets on it, then a broadcast and 1,000 targeted events
/// through Kafka, MongoDB and Redis (the load side is `services/notifications/examples/notify_load.rs`).
async fn notify(stack: &Stack, ports: &Ports, sockets: usize) -> Result<()> {
    const PREFIX: &str = "benchnotify";
    let load = build_example("storefront-notifications", "notify_load")?;
    let release = target_dir().join("release");
    let port = procs::free_port()?;
    let auth = ports.url(&services::SERVICES[0]);
    let mut replica = Command::new(release.join("notifications"));
    replica
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("MONGODB_DATABASE", PREFIX)
        .env("TOPIC_PREFIX", PREFIX)
        .env("KAFKA_ENSURE_TOPICS", "true")
        .env("KAFKA_FETCH_WAIT_MAX_MS", services::FETCH_WAIT_MAX_MS)
        .env(
            "KAFKA_IDLE_FETCH_INTERVAL_MS",
            services::IDLE_FETCH_INTERVAL_MS,
        )
        .env("WS_MAX_PER_USER", "5")
        .env(
            "JWKS_URL",
            format!("{auth}/api/users/.well-known/jwks.json"),
        )
        .envs(stack.endpoints.env());
    let proc = procs::spawn("notifications-bench", &mut replica, &stack.logs())?;
    let result = async {
        let client = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if Instant::now() > until {
                bail!("the bench's notifications replica is not ready after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        step(format!(
            "notify: {sockets} sockets on one replica, a broadcast, 1000 targeted events"
        ));
        let status = Command::new(&load)
            .env(
                "BENCH_WS_URL",
                format!("ws://127.0.0.1:{port}/ws/notifications"),
            )
            .env("BENCH_SOCKETS", sockets.to_string())
            .env("BENCH_TARGETED", "1000")
            .env("BENCH_RATE", "100")
            .env("BENCH_PREFIX", PREFIX)
            .env("BENCH_PID", proc.pid.to_string())
            .env("BENCH_KAFKA", &stack.endpoints.kafka_bootstrap)
            .env("BENCH_SIGNING_KEY", stack.dir.join("signing-key.pem"))
            .status()?;
        if !status.success() {
            bail!("the notify load generator failed");
        }
        Ok(())
    }
    .await;
    procs::stop(&proc, Duration::from_secs(5));
    result
}
