//! The services of docs/architecture.md §3, their local ports and routes, the environment each is
//! started with, and the nginx gateway that mirrors the Ingress on one port. A service joins the
//! stack as soon as its crate exists (`services/{name}/Cargo.toml`); routes of services not built
//! yet answer 503 problem+json from the gateway, so the route table is complete from day one.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    install::{Tools, run},
    procs::{self, Proc},
    root,
    stack::{Endpoints, Stack},
    step,
};

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

/// The largest request body of a JSON or form route: the services' `MAX_BODY_BYTES` default
/// (services/kit/src/config.rs).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The routes that take image uploads (products' API and the admin page's form through web), with
/// the body they read before their own rules answer (`MAX_UPLOAD_BYTES`,
/// services/kit/src/config.rs). The gateway refuses anything larger itself, so a service never
/// closes a connection nginx is still sending on (which nginx would answer with a 502).
pub const UPLOAD_ROUTES: [(&str, &str, usize); 2] = [
    ("^/api/products/[^/]+/images$", "products", 10 * 1024 * 1024),
    ("^/admin/products/[^/]+/images$", "web", 10 * 1024 * 1024),
];

/// The errors nginx answers itself (a request it cannot parse, a body over the route's limit, a
/// service that is down), as problem+json like every service's (docs/api/errors.md).
const GATEWAY_ERRORS: [(u16, &str, &str, &str); 12] = [
    (
        400,
        "malformed-request",
        "Bad Request",
        "the gateway could not read this request (a malformed request line or headers, or headers too large)",
    ),
    (
        405,
        "method-not-allowed",
        "Method Not Allowed",
        "the gateway does not take this method (such as TRACE)",
    ),
    (
        408,
        "request-timeout",
        "Request Timeout",
        "the request was not received in time",
    ),
    (
        411,
        "length-required",
        "Length Required",
        "this request needs a Content-Length",
    ),
    (
        413,
        "payload-too-large",
        "Payload Too Large",
        "the request body is larger than this route accepts",
    ),
    (
        414,
        "uri-too-long",
        "URI Too Long",
        "the request URL is too long",
    ),
    (
        500,
        "internal",
        "Internal Server Error",
        "the gateway failed",
    ),
    (
        501,
        "not-implemented",
        "Not Implemented",
        "the gateway does not support this request (such as its Transfer-Encoding)",
    ),
    (
        502,
        "unavailable",
        "Bad Gateway",
        "the service behind this route did not answer; try again shortly",
    ),
    (
        503,
        "unavailable",
        "Service Unavailable",
        "the service behind this route is unavailable; try again shortly",
    ),
    (
        504,
        "unavailable",
        "Gateway Timeout",
        "the service behind this route did not answer in time; try again shortly",
    ),
    (
        505,
        "http-version-not-supported",
        "HTTP Version Not Supported",
        "send HTTP/1.1 (or HTTP/1.0) to the gateway",
    ),
];

/// The directives that pass a request on to `service`. The gateway is the edge: the client's
/// address and host it sets replace whatever the client claimed (services trust only `X-Real-IP`
/// for the address; `X-Forwarded-Host` is what the Origin checks compare with).
fn proxy_to(service: &str, upgrade: bool) -> String {
    let connection = if upgrade {
        "            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n            proxy_read_timeout 1h;\n"
    } else {
        "            proxy_set_header Connection \"\";\n"
    };
    format!(
        "            proxy_pass http://{service};\n            proxy_http_version 1.1;\n{connection}            proxy_set_header Host $http_host;\n            proxy_set_header X-Real-IP $remote_addr;\n            proxy_set_header X-Forwarded-For $remote_addr;\n            proxy_set_header X-Forwarded-Host $http_host;\n            proxy_set_header X-Forwarded-Proto $scheme;\n"
    )
}

/// The nginx configuration: the Ingress routes on the gateway port, WebSocket upgrades on `/ws/`,
/// each route's body limit, and nginx's own errors as problem+json.
fn gateway_config(dir: &Path, ports: &Ports) -> String {
    let port = ports.gateway;
    let mut upstreams = String::new();
    let mut locations = String::new();
    for (pattern, name, bytes) in UPLOAD_ROUTES {
        let service = SERVICES.iter().find(|s| s.name == name).expect("a service");
        if service.exists() {
            locations.push_str(&format!(
                "        location ~ {pattern} {{\n            client_max_body_size {bytes};\n{}        }}\n",
                proxy_to(name, false)
            ));
        }
    }
    for service in &SERVICES {
        for route in service.routes {
            let body = if service.exists() {
                proxy_to(service.name, route.starts_with("/ws/"))
            } else {
                format!(
                    "            default_type application/problem+json;\n            return 503 '{{\"type\":\"https://storefront.dev/problems/service-not-built\",\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"the {} service is not part of this build yet\"}}';\n",
                    service.name
                )
            };
            locations.push_str(&format!("        location {route} {{\n{body}        }}\n"));
        }
        if service.exists() {
            upstreams.push_str(&format!(
                "    upstream {} {{\n        server 127.0.0.1:{};\n        keepalive 64;\n    }}\n",
                service.name,
                ports.of(service)
            ));
        }
    }
    let mut errors = String::new();
    for (status, kind, title, detail) in GATEWAY_ERRORS {
        // 494 is nginx's own code for headers too large; it answers it as a 400. The error pages
        // are internal locations by path: a named location fails (500) for a request line nginx
        // could not parse. They have no body limit: an upload's 502 would otherwise meet the
        // default 64 KiB there and become nginx's own HTML 413.
        let codes = if status == 400 {
            "400 494".to_owned()
        } else {
            status.to_string()
        };
        errors.push_str(&format!(
            "        error_page {codes} /_gateway/errors/{status};\n        location = /_gateway/errors/{status} {{\n            internal;\n            client_max_body_size 0;\n            default_type application/problem+json;\n            return {status} '{{\"type\":\"https://storefront.dev/problems/{kind}\",\"title\":\"{title}\",\"status\":{status},\"detail\":\"{detail}\"}}';\n        }}\n"
        ));
    }
    let d = dir.display();
    format!(
        "# Generated by `cargo xtask up`: the Ingress routes of docs/architecture.md on one port.
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    client_max_body_size {MAX_BODY_BYTES};
{upstreams}    server {{
        listen 127.0.0.1:{port};
{errors}{locations}    }}
}}
"
    )
}

/// Starts nginx with the generated configuration, after checking it.
fn start_gateway(stack: &mut Stack, tools: &Tools, ports: &Ports) -> Result<()> {
    let port = ports.gateway;
    let dir = stack.dir.join("gateway");
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let config = dir.join("nginx.conf");
    std::fs::write(&config, gateway_config(&dir, ports))?;
    run(
        Command::new(&tools.nginx)
            .arg("-t")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config),
        "nginx -t (check the gateway configuration)",
    )?;
    if procs::port_in_use(port) {
        bail!("port {port} for the gateway is taken by another program");
    }
    let proc = procs::spawn(
        "gateway",
        Command::new(&tools.nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .args(["-g", "daemon off;"]),
        &stack.logs(),
    )?;
    stack.started(proc, port, Duration::from_secs(10), "gateway (nginx)")
}
