//! The services of docs/architecture.md §3, their local ports and routes, the environment each is
//! started with, and the nginx gateway that mirrors the Ingress on one port (`gateway`). A service joins the
//! stack as soon as its crate exists (`services/{name}/Cargo.toml`); routes of services not built
//! yet answer 503 problem+json from the gateway, so the route table is complete from day one.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use self::gateway::start_gateway;
use crate::{
    install::Tools,
    procs::{self, Proc},
    root,
    stack::{Endpoints, Stack},
    step,
};

mod gateway;

pub struct Service {
    pub name: &'static str,
    /// Its port on loopback under `up` (the gateway proxies to it); see [`Ports`].
    pub port: u16,
    /// Ingress path prefixes.
    pub routes: &'static [&'static str],
}

pub const SERVICES: [Service; 7] = [
    Service {
        name: "auth",
        port: 8101,
        routes: &["/api/users/"],
    },
    Service {
        name: "products",
        port: 8102,
        routes: &["/api/products"],
    },
    Service {
        name: "cart",
        port: 8103,
        routes: &["/api/cart"],
    },
    Service {
        name: "orders",
        port: 8104,
        routes: &["/api/orders"],
    },
    Service {
        name: "payments",
        port: 8105,
        routes: &["/api/payments"],
    },
    Service {
        name: "notifications",
        port: 8106,
        routes: &["/api/notifications", "/ws/notifications"],
    },
    Service {
        name: "web",
        port: 8107,
        routes: &["/"],
    },
];

pub const GATEWAY_PORT: u16 = 8080;
/// The signing secret of payments' webhook endpoint on the local Stripe stand-in.
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_storefront_local";
pub const TOPIC_PREFIX: &str = "storefront";
/// The services' Kafka fetch settings against tansu, which holds every fetch for the whole wait
/// (docs/services/adding-a-service.md, "Kafka client settings").
pub const FETCH_WAIT_MAX_MS: &str = "3";
pub const IDLE_FETCH_INTERVAL_MS: &str = "5000";
/// Any `pk_…` works with the local Stripe stand-in.
pub const STRIPE_PUBLISHABLE_KEY: &str = "pk_test_storefront_local";

impl Service {
    pub fn exists(&self) -> bool {
        root()
            .join("services")
            .join(self.name)
            .join("Cargo.toml")
            .exists()
    }

    pub fn package(&self) -> String {
        format!("storefront-{}", self.name)
    }
}

/// Where one stack's services and gateway listen: `up` keeps the fixed ports above, so its URLs
/// never change; tests and benches take free ones, so they run beside an `up`.
#[derive(Debug, Clone)]
pub struct Ports {
    services: [u16; SERVICES.len()],
    pub gateway: u16,
}

impl Ports {
    pub fn fixed() -> Ports {
        Ports {
            services: std::array::from_fn(|i| SERVICES[i].port),
            gateway: GATEWAY_PORT,
        }
    }

    pub fn free() -> Result<Ports> {
        let [services @ .., gateway] = procs::free_ports::<{ SERVICES.len() + 1 }>()?;
        Ok(Ports { services, gateway })
    }

    pub fn of(&self, service: &Service) -> u16 {
        let index = SERVICES
            .iter()
            .position(|s| s.name == service.name)
            .expect("one of SERVICES");
        self.services[index]
    }

    pub fn url(&self, service: &Service) -> String {
        format!("http://127.0.0.1:{}", self.of(service))
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway)
    }
}

pub fn built() -> Vec<&'static Service> {
    SERVICES.iter().filter(|s| s.exists()).collect()
}

/// `cargo build` of every existing service binary.
pub fn build(release: bool) -> Result<PathBuf> {
    build_with(release, &[])
}

/// `cargo build` of every existing service binary and those of the packages `more`.
pub fn build_with(release: bool, more: &[&str]) -> Result<PathBuf> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(root()).args(["build", "--bins"]);
    for service in built() {
        cargo.args(["-p", &service.package()]);
    }
    for package in more {
        cargo.args(["-p", package]);
    }
    if release {
        cargo.arg("--release");
    }
    step(format!(
        "building services ({})",
        if release { "release" } else { "debug" }
    ));
    let status = cargo.status().context("run cargo build")?;
    if !status.success() {
        bail!("cargo build of the services failed");
    }
    Ok(target_dir().join(if release { "release" } else { "debug" }))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// What every service is started with; `extra` adds or overrides per service.
pub struct ServiceEnv<'a> {
    pub endpoints: &'a Endpoints,
    pub ports: &'a Ports,
    pub signing_key: &'a Path,
    pub admin: Option<(&'a str, &'a str)>,
    /// Extra variables for every service (the bench raises rate limits).
    pub overrides: Vec<(String, String)>,
}

impl ServiceEnv<'_> {
    fn apply(&self, service: &Service, command: &mut Command) {
        let url = |index: usize| self.ports.url(&SERVICES[index]);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("BIND_ADDR", format!("127.0.0.1:{}", self.ports.of(service)))
            .env(
                "MONGODB_DATABASE",
                format!("{TOPIC_PREFIX}_{}", service.name),
            )
            .env("TOPIC_PREFIX", TOPIC_PREFIX)
            .env("KAFKA_ENSURE_TOPICS", "true")
            // tansu holds every fetch for the whole wait: short, and no fetching while idle
            // (docs/services/adding-a-service.md, "Kafka client settings").
            .env("KAFKA_FETCH_WAIT_MAX_MS", FETCH_WAIT_MAX_MS)
            .env("KAFKA_IDLE_FETCH_INTERVAL_MS", IDLE_FETCH_INTERVAL_MS)
            .env("COOKIE_SECURE", "false")
            .env("TRUST_PROXY_HEADERS", "true")
            .env(
                "JWKS_URL",
                format!("{}/api/users/.well-known/jwks.json", url(0)),
            )
            .env("PUBLIC_URL", self.ports.gateway_url())
            .env("S3_BUCKET", format!("{TOPIC_PREFIX}-images"))
            .env("S3_ENSURE_BUCKET", "true")
            .env("AUTH_URL", url(0))
            .env("PRODUCTS_URL", url(1))
            .env("CART_URL", url(2))
            .env("ORDERS_URL", url(3))
            .env("PAYMENTS_URL", url(4))
            .env("NOTIFICATIONS_URL", url(5))
            .env("STRIPE_PUBLISHABLE_KEY", STRIPE_PUBLISHABLE_KEY)
            .env(
                "STRIPE_JS_URL",
                format!("{}/js.stripe.com/v3/", self.endpoints.stripe_url),
            )
            .env("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET)
            .envs(self.endpoints.env())
            // Traces, when asked for (`OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo
            // xtask up`): every `OTEL_*` variable of this shell (docs/traces.md) — unless the
            // caller sets its own (the test stack's receiver).
            .envs(
                std::env::vars()
                    .filter(|(name, _)| name.starts_with("OTEL_"))
                    .filter(|_| !self.overrides.iter().any(|(k, _)| k.starts_with("OTEL_"))),
            );
        if service.name == "web" {
            // Image uploads pass through web on their way to products.
            command.env("MAX_BODY_BYTES", (10 * 1024 * 1024).to_string());
        }
        if service.name == "products" {
            // The dashboard of a one-machine shop follows the views within a few seconds (the
            // default, for a real shop's traffic, is 10 s).
            command.env("VIEWS_FLUSH_MS", "2000");
        }
        if service.name == "auth" {
            command.env("SIGNING_KEY_FILE", self.signing_key);
            if let Some((email, password)) = self.admin {
                command
                    .env("ADMIN_EMAIL", email)
                    .env("ADMIN_PASSWORD", password);
            }
        }
        command.envs(self.overrides.iter().map(|(k, v)| (k, v)));
    }
}

/// The whole shop on `stack`'s backends: every built service (each waited for until `/readyz`
/// answers), the demo catalog, payments' webhook on the Stripe stand-in, and the gateway.
/// `up`, the full-stack tests and the benches all start it this way.
pub fn start_shop(
    stack: &mut Stack,
    tools: &Tools,
    bin_dir: &Path,
    env: &ServiceEnv<'_>,
) -> Result<()> {
    start(stack, bin_dir, env)?;
    seed_demo(bin_dir, env)?;
    register_stripe_webhook(&env.endpoints.stripe_url, env.ports)?;
    start_gateway(stack, tools, env.ports)
}

fn start(stack: &mut Stack, bin_dir: &Path, env: &ServiceEnv<'_>) -> Result<()> {
    start_some(stack, bin_dir, env, &built())
}

/// Starts `services` (in that order) on `stack`'s backends, each waited for until `/readyz`
/// answers.
pub fn start_some(
    stack: &mut Stack,
    bin_dir: &Path,
    env: &ServiceEnv<'_>,
    services: &[&Service],
) -> Result<()> {
    for &service in services {
        let port = env.ports.of(service);
        if procs::port_in_use(port) {
            bail!(
                "port {port} for {} is taken by another program",
                service.name
            );
        }
        let mut command = Command::new(bin_dir.join(service.name));
        env.apply(service, &mut command);
        let proc = procs::spawn(service.name, &mut command, &stack.logs())?;
        stack.started(proc.clone(), port, Duration::from_secs(60), service.name)?;
        wait_ready(&proc, service, &env.ports.url(service))?;
    }
    Ok(())
}

/// Points the Stripe stand-in's webhooks at payments (its store is in memory, so every start).
pub fn register_stripe_webhook(stripe_url: &str, ports: &Ports) -> Result<()> {
    let Some(payments) = built().into_iter().find(|s| s.name == "payments") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let response = runtime.block_on(
        reqwest::Client::new()
            .post(format!("{stripe_url}/_config/webhooks/storefront"))
            .basic_auth(crate::stack::STRIPE_SECRET_KEY, Some(""))
            .form(&[
                (
                    "url",
                    format!("{}/api/payments/webhook", ports.url(payments)),
                ),
                ("secret", STRIPE_WEBHOOK_SECRET.to_owned()),
            ])
            .send(),
    )?;
    if !response.status().is_success() {
        bail!(
            "registering payments' webhook with the Stripe stand-in: {}",
            response.status()
        );
    }
    Ok(())
}

/// The catalog for a local stack: `products seed-demo` (the demo catalog, on a stack whose products
/// database never held one), then `products resync` (every product's snapshot again: the local
/// Kafka keeps its topics in memory, so after a restart the replicas in cart and orders catch up
/// from these).
fn seed_demo(bin_dir: &Path, env: &ServiceEnv<'_>) -> Result<()> {
    let Some(products) = built().into_iter().find(|s| s.name == "products") else {
        return Ok(());
    };
    step("demo catalog (products seed-demo, products resync)");
    for subcommand in ["seed-demo", "resync"] {
        let mut command = Command::new(bin_dir.join(products.name));
        env.apply(products, &mut command);
        command.arg(subcommand).env("RUST_LOG", "warn");
        let output = command
            .output()
            .with_context(|| format!("run products {subcommand}"))?;
        if !output.status.success() {
            bail!(
                "products {subcommand} failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
    Ok(())
}

fn wait_ready(proc: &Proc, service: &Service, base: &str) -> Result<()> {
    let url = format!("{base}/readyz");
    let until = Instant::now() + Duration::from_secs(60);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    loop {
        let answer = runtime.block_on(async {
            let response = client
                .get(&url)
                .timeout(Duration::from_secs(3))
                .send()
                .await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await.unwrap_or_default()))
        });
        match answer {
            Ok((status, _)) if status.is_success() => return Ok(()),
            Ok((_, body)) if Instant::now() > until => {
                bail!("{} is not ready after 60 s: {body}", service.name)
            }
            Err(e) if Instant::now() > until => {
                bail!("{} is not ready after 60 s: {e}", service.name)
            }
            _ => {}
        }
        if !procs::alive(proc.pid) {
            bail!(
                "{} exited; its log ends:\n{}",
                service.name,
                procs::tail(&proc.log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
