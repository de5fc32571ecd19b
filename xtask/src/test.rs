//! `cargo xtask test`: the whole suite against real backends.
//!
//! Builds the tests first (a compile error needs no backends), starts one set of backends with
//! empty storage under `target/test-stack/`, and on them the whole shop — every service binary of
//! that same build, the demo catalog and the gateway, on free ports — for the tests that go
//! through the shop as a visitor does (web's page and browser tests). Then runs every test with
//! nextest (tests isolate themselves by database name, topic prefix and key namespace; the shop
//! uses the `storefront` prefix no other test takes), stops everything, and exits non-zero on any
//! failure — including a backend that cannot be installed or started.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{
    cluster::{self, Cluster},
    faults, images,
    install::{self, ApiServerTools, Browser, ClusterTools, ManifestTools, Tools, run},
    root,
    services::{self, Ports, ServiceEnv, target_dir},
    stack::{Persistence, S3_ACCESS_KEY, S3_SECRET_KEY, STRIPE_SECRET_KEY, Stack},
    step,
};

/// What the cluster's end-to-end test installs: the shop's images under this registry, tagged
/// [`CLUSTER_TAG`] and, for the rollout, [`CLUSTER_NEXT_TAG`] (the same image).
const CLUSTER_REGISTRY: &str = "localhost/storefront-e2e";
const CLUSTER_TAG: &str = "1";
const CLUSTER_NEXT_TAG: &str = "2";
/// The nextest profile of the tests that run on the single-node cluster (`.config/nextest.toml`).
const CLUSTER_PROFILE: &str = "cluster";
/// Lets the cluster tests use a cluster this run did not start (they replace what its shop
/// namespaces hold).
const USE_RUNNING_CLUSTER: &str = "STOREFRONT_TEST_USE_RUNNING_CLUSTER";

/// The nextest profile of the OpenAPI fuzz run, on the suite's shop after the suite.
const FUZZ_PROFILE: &str = "fuzz";

/// The full-stack shop's admin (its password is new every run).
const SHOP_ADMIN_EMAIL: &str = "shop-admin@example.com";

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

/// `cargo nextest run --no-run` of the workspace; answers the directory of the service binaries
/// it built (they are built with the tests' features, so the shop runs exactly what was tested,
/// without a second build).
fn build_tests() -> Result<PathBuf> {
    step("building the tests");
    let output = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-run",
        ])
        .args(["--cargo-message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo nextest")?;
    if !output.status.success() {
        bail!("the tests do not build");
    }
    let mut binaries = BTreeSet::new();
    let mut dir = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_bin = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
        // The binary itself, not its unit-test harness (also of kind "bin").
        let is_test = message["profile"]["test"] == true;
        if message["reason"] == "compiler-artifact"
            && is_bin
            && !is_test
            && let Some(executable) = message["executable"].as_str()
        {
            let executable = Path::new(executable);
            binaries.insert(message["target"]["name"].as_str().unwrap_or("").to_owned());
            dir = executable.parent().map(Path::to_path_buf);
        }
    }
    let dir = dir.context("the test build reported no binaries")?;
    for service in services::built() {
        if !binaries.contains(service.name) {
            bail!(
                "the test build did not build the {} binary (does {} have integration tests?)",
                service.name,
                service.package()
            );
        }
    }
    Ok(dir)
}

pub fn test(args: &[String]) -> Result<()> {
    let (tools, browser, manifests, bin, cluster_tools) = std::thread::scope(|scope| {
        // Kubernetes (10 to 17 minutes) and, for the fault test of a whole run, its tansu (about
        // 15) are built from source the first time: beside the cargo build. The scope joins the
        // threads whatever happens here, so no build outlives the run.
        let cluster_tools = scope.spawn(ClusterTools::ensure);
        // (A run with arguments has it built when its fault phase starts, if it has one.)
        let tansu_sqlite =
            (args.is_empty() && faults_wanted()).then(|| scope.spawn(install::tansu_sqlite));
        let prepared = (|| -> Result<_> {
            let tools = Tools::ensure()?;
            let browser = Browser::ensure()?;
            let manifests = ManifestTools::ensure()?;
            nextest()?;
            let bin = build_tests()?;
            // Joined before the suite, which wants a quiet machine. It only fills the cache the
            // fault phase takes tansu from: a failed build fails that phase alone (it tries
            // again and says why).
            if let Some(tansu_sqlite) = tansu_sqlite {
                match tansu_sqlite.join() {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => step(format!(
                        "building tansu failed ({e:#}); the fault test will try again"
                    )),
                    Err(_) => step("building tansu panicked; the fault test will try again"),
                }
            }
            Ok((tools, browser, manifests, bin))
        })();
        let cluster_tools = cluster_tools
            .join()
            .map_err(|_| anyhow::anyhow!("installing the cluster's tools panicked"))?;
        let (tools, browser, manifests, bin) = prepared?;
        anyhow::Ok((tools, browser, manifests, bin, cluster_tools?))
    })?;
    let on_cluster_selected = selects_tests(args, CLUSTER_PROFILE)?;
    if on_cluster_selected {
        may_use_the_running_cluster()?;
    }
    let api_server = ApiServerTools::ensure()?;
    // The suite's stack only when the arguments select some test of it (`-E 'binary(faults)'`
    // selects none: nextest would fail for want of tests).
    let suite = if selects_tests(args, "default")? || selects_tests(args, FUZZ_PROFILE)? {
        suite(args, &tools, &browser, &manifests, &api_server, &bin)
    } else {
        Ok(())
    };
    // Then, alone, the fault test on a stack of its own (it kills its processes).
    let faults = if !selects_tests(args, faults::PROFILE)? {
        Ok(())
    } else if !faults_wanted() {
        step("the fault test left out (STOREFRONT_TEST_FAULTS=0)");
        Ok(())
    } else {
        faults::run(args, &tools, &bin)
    };
    // Then, on a free machine, the tests that need the single-node cluster.
    let on_cluster = if on_cluster_selected {
        on_cluster(args, &cluster_tools, &tools, &bin, &[], false).map(|_| ())
    } else {
        Ok(())
    };
    suite.and(faults).and(on_cluster)
}

/// Whether this run may include the fault test: unless `STOREFRONT_TEST_FAULTS=0` (it builds
/// tansu the first time, about 15 minutes, and takes about 2 more).
fn faults_wanted() -> bool {
    std::env::var("STOREFRONT_TEST_FAULTS").map_or(true, |v| v != "0")
}

/// The suite on the backends and the whole shop, started for it and stopped after.
fn suite(
    args: &[String],
    tools: &Tools,
    browser: &Browser,
    manifests: &ManifestTools,
    api_server: &ApiServerTools,
    bin: &Path,
) -> Result<()> {
    let dir = target_dir().join("test-stack");
    let _ = std::fs::remove_dir_all(&dir);
    let mut stack = Stack::start_backends(&dir, tools, Persistence::Ephemeral)?;
    let secured = stack.start_secured_mongodb(tools).and_then(|admin| {
        let kubeconfig = stack.start_api_server(api_server, &manifests.kubectl)?;
        Ok((admin, kubeconfig))
    });
    let shop = secured.and_then(|(admin, kubeconfig)| {
        start_shop(&mut stack, tools, bin, &dir).map(|shop| ((admin, kubeconfig), shop))
    });
    let screenshots = target_dir().join("screenshots");
    let status = shop.and_then(
        |((mongodb_admin, kubeconfig), (ports, admin_password, otlp))| {
            let e = &stack.endpoints;
            step(format!(
                "running the tests (the shop: {}; screenshots: {})",
                ports.gateway_url(),
                screenshots.display()
            ));
            let nextest = |profile: &str| {
                let mut command = Command::new(env!("CARGO"));
                command
                    .current_dir(root())
                    .args([
                        "nextest",
                        "run",
                        "--workspace",
                        "--all-features",
                        "--no-fail-fast",
                    ])
                    .args(["--profile", profile])
                    .args(args)
                    .env("STOREFRONT_TEST_MONGODB_URI", &e.mongodb_uri)
                    .env("STOREFRONT_TEST_MONGODB_ADMIN_URI", &mongodb_admin)
                    .env("STOREFRONT_TEST_SECANTUSDB_PYTHON", &tools.secantusd_python)
                    .env("STOREFRONT_TEST_KAFKA_BOOTSTRAP", &e.kafka_bootstrap)
                    .env("STOREFRONT_TEST_REDIS_URL", &e.redis_url)
                    .env("STOREFRONT_TEST_S3_ENDPOINT", &e.s3_endpoint)
                    .env("STOREFRONT_TEST_S3_ACCESS_KEY", S3_ACCESS_KEY)
                    .env("STOREFRONT_TEST_S3_SECRET_KEY", S3_SECRET_KEY)
                    .env("STOREFRONT_TEST_STRIPE_URL", &e.stripe_url)
                    .env("STOREFRONT_TEST_STRIPE_SECRET_KEY", STRIPE_SECRET_KEY)
                    .env("STOREFRONT_TEST_SHOP_URL", ports.gateway_url())
                    .env("STOREFRONT_TEST_SHOP_ADMIN_EMAIL", SHOP_ADMIN_EMAIL)
                    .env("STOREFRONT_TEST_SHOP_ADMIN_PASSWORD", &admin_password)
                    .env("STOREFRONT_TEST_OTLP_ADDR", &otlp)
                    .env("STOREFRONT_TEST_CHROMIUM", &browser.chromium)
                    .env("STOREFRONT_TEST_CHROMEDRIVER", &browser.chromedriver)
                    .env("STOREFRONT_TEST_SCREENSHOTS", &screenshots)
                    .env("STOREFRONT_TEST_HELM", &manifests.helm)
                    .env("STOREFRONT_TEST_KUBECTL", &manifests.kubectl)
                    .env("STOREFRONT_TEST_KUBECONFIG", &kubeconfig)
                    .env(
                        "STOREFRONT_TEST_KUBERNETES_VALIDATE",
                        &manifests.kubernetes_validate,
                    );
                command
            };
            let suite = if selects_tests(args, "default")? {
                nextest("default")
                    .status()
                    .context("run cargo nextest")?
                    .success()
            } else {
                true
            };
            // Then, on the same shop with nothing else running, the OpenAPI fuzz run (tests/fuzz.rs):
            // it writes junk products and carts a test could trip on.
            let fuzz = if selects_tests(args, FUZZ_PROFILE)? {
                step("fuzzing every documented operation through the gateway");
                let schemathesis = install::schemathesis()?;
                nextest(FUZZ_PROFILE)
                    .env("STOREFRONT_TEST_SCHEMATHESIS", schemathesis)
                    .status()
                    .context("run cargo nextest")?
                    .success()
            } else {
                true
            };
            anyhow::Ok(suite && fuzz)
        },
    );
    step("stopping the test stack");
    stack.stop();
    if !status? {
        bail!(
            "tests failed (backend and service logs: {}/logs/)",
            dir.display()
        );
    }
    Ok(())
}

/// Whether the nextest arguments select any test of `profile`.
fn selects_tests(args: &[String], profile: &str) -> Result<bool> {
    let output = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["nextest", "list", "--workspace", "--all-features"])
        .args(["--profile", profile, "--message-format", "json"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo nextest list")?;
    if !output.status.success() {
        bail!("cargo nextest list failed");
    }
    let list: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("read cargo nextest list's answer")?;
    let suites = list["rust-suites"].as_object().cloned().unwrap_or_default();
    Ok(suites.values().any(|suite| {
        suite["testcases"].as_object().is_some_and(|cases| {
            cases
                .values()
                .any(|case| case["filter-match"]["status"] == "matches")
        })
    }))
}

/// The single-node cluster (started unless one runs; stopped after if it was started here), the
/// shop's images from `bin` and the development backends' images imported into it, then the
/// cluster profile's tests (with `extra` in their environment). Answers what the tests printed
/// when `capture` (they print to the terminal too).
fn on_cluster(
    args: &[String],
    cluster_tools: &ClusterTools,
    tools: &Tools,
    bin: &Path,
    extra: &[(&str, String)],
    capture: bool,
) -> Result<String> {
    let _lock = Cluster::here().lock()?;
    let was_running = Cluster::here().running();
    let cluster = cluster::up(cluster_tools)?;
    let result = (|| {
        let containerd = Cluster::containerd_socket();
        let work = target_dir().join("images");
        let started = std::time::Instant::now();
        images::shop(bin, CLUSTER_REGISTRY, CLUSTER_TAG, &work, &containerd)?;
        for (_, image) in images::shop_programs() {
            images::tag(
                &containerd,
                &format!("{CLUSTER_REGISTRY}/{image}:{CLUSTER_TAG}"),
                &format!("{CLUSTER_REGISTRY}/{image}:{CLUSTER_NEXT_TAG}"),
            )?;
        }
        images::dev_backends(tools, &work.join("dev"), &containerd)?;
        step(format!(
            "images built and imported in {:.1} s; running the tests on the cluster",
            started.elapsed().as_secs_f64()
        ));
        let mut nextest = Command::new(env!("CARGO"));
        nextest
            .current_dir(root())
            .args(["nextest", "run", "--workspace", "--all-features"])
            .args(["--profile", CLUSTER_PROFILE, "--no-fail-fast"])
            .args(args)
            .env("STOREFRONT_TEST_CLUSTER_KUBECONFIG", cluster.kubeconfig())
            .env("STOREFRONT_TEST_HELM", &cluster_tools.helm)
            .env("STOREFRONT_TEST_KUBECTL", &cluster_tools.kubectl)
            .env("STOREFRONT_TEST_CLUSTER_REGISTRY", CLUSTER_REGISTRY)
            .env("STOREFRONT_TEST_CLUSTER_TAG", CLUSTER_TAG)
            .env("STOREFRONT_TEST_CLUSTER_NEXT_TAG", CLUSTER_NEXT_TAG)
            .envs(extra.iter().map(|(k, v)| (k, v)));
        let mut printed = String::new();
        let success = if capture {
            nextest.arg("--no-capture").stderr(Stdio::piped());
            let mut child = nextest.spawn().context("run cargo nextest")?;
            let stderr = child.stderr.take().expect("piped");
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok)
            {
                eprintln!("{line}");
                printed.push_str(&line);
                printed.push('\n');
            }
            child.wait()?.success()
        } else {
            nextest.status().context("run cargo nextest")?.success()
        };
        if !success {
            bail!(
                "tests on the cluster failed (its logs: {}; kubectl --kubeconfig {})",
                cluster.logs().display(),
                cluster.kubeconfig().display()
            );
        }
        Ok(printed)
    })();
    let stopped = if was_running {
        Ok(())
    } else {
        step("stopping the cluster");
        cluster::down()
    };
    // A failed test says more than a failed stop.
    let printed = result?;
    stopped.map(|()| printed)
}

/// Refuses a cluster this run did not start, unless the developer lets it be used: the cluster
/// tests replace what its shop namespaces hold.
fn may_use_the_running_cluster() -> Result<()> {
    if Cluster::here().running() && std::env::var(USE_RUNNING_CLUSTER).as_deref() != Ok("1") {
        bail!(
            "a cluster runs on this machine (cargo xtask cluster up): the cluster tests replace \
             what is in its namespaces shop, storefront-data and storefront-system. Stop it \
             (cargo xtask cluster down), set {USE_RUNNING_CLUSTER}=1 to let them, or leave them \
             out with a filter (-E 'not binary(cluster)')"
        );
    }
    Ok(())
}

/// `cargo xtask bench cluster`: the cluster journey of the tests on release images, with the
/// pods' cost at rest measured over 60 s after the first paid order; prints the figures.
pub fn bench_cluster() -> Result<()> {
    may_use_the_running_cluster()?;
    let cluster_tools = ClusterTools::ensure()?;
    let tools = Tools::ensure()?;
    nextest()?;
    let bin = images::build_programs(true)?;
    let printed = on_cluster(
        &[],
        &cluster_tools,
        &tools,
        &bin,
        &[("STOREFRONT_BENCH_IDLE_SECS", "60".to_owned())],
        true,
    )?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("\ncargo xtask bench cluster (release images, one node, {cores} cores):");
    for line in printed.lines().filter_map(|l| l.split_once("FIGURES ")) {
        println!("  {}", line.1);
    }
    for line in printed
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(" s] "))
    {
        println!("  {line}");
    }
    Ok(())
}

/// The whole shop on the test backends, on free ports; answers the ports, the admin's password
/// and where the shop sends its traces: an OTLP receiver that is the trace test
/// (`xtask/tests/traces.rs`) while it runs, and nothing otherwise (an export then fails at once,
/// quietly).
fn start_shop(
    stack: &mut Stack,
    tools: &Tools,
    bin: &Path,
    dir: &Path,
) -> Result<(Ports, String, String)> {
    let key = dir.join("signing-key.pem");
    run(
        Command::new(bin.join("auth")).arg("generate-key").arg(&key),
        "auth generate-key",
    )?;
    let password = format!("sf-{}", uuid::Uuid::new_v4().simple());
    let ports = Ports::free()?;
    let otlp = format!("127.0.0.1:{}", unassigned_port()?);
    let env = ServiceEnv {
        endpoints: &stack.endpoints.clone(),
        ports: &ports,
        signing_key: &key,
        admin: Some((SHOP_ADMIN_EMAIL, &password)),
        overrides: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://{otlp}"),
            ),
            // Spans reach the receiver within a fifth of a second, not the default five.
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
        ],
    };
    services::start_shop(stack, tools, bin, &env)?;
    Ok((ports, password, otlp))
}

/// A free port below the kernel's ephemeral range (32768 and up): nothing is handed it by a bind
/// to port 0 or as the source of a connection while it waits for the trace test to listen on it
/// (a connection to a closed port in that range can even connect to itself).
fn unassigned_port() -> Result<u16> {
    for attempt in 0..200u16 {
        let seed = uuid::Uuid::new_v4().as_u128() as u16;
        let port = 20_000 + (seed.wrapping_add(attempt)) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port between 20000 and 32000")
}

/// `cargo xtask schemas`: rewrite `docs/events/` from the event types.
pub fn schemas() -> Result<()> {
    bless(
        "storefront-events",
        "contracts",
        "docs_events_schemas_are_current",
    )?;
    step("docs/events/ regenerated");
    Ok(())
}

/// `cargo xtask openapi`: rewrite `docs/api/openapi.json` from the services' documents.
pub fn openapi() -> Result<()> {
    bless("xtask", "openapi", "docs_api_openapi_is_current")?;
    step("docs/api/openapi.json regenerated");
    Ok(())
}

/// `cargo xtask crds`: rewrite `crds/storefront.yaml` from the operator's types.
pub fn crds() -> Result<()> {
    bless("storefront-operator", "crd", "the_committed_crd_is_current")?;
    step("crds/storefront.yaml and the chart's copy regenerated");
    Ok(())
}

/// Runs a test that compares a committed file with what the code generates, letting it rewrite
/// the file (`STOREFRONT_BLESS`).
fn bless(package: &str, test: &str, name: &str) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["test", "-p", package, "--test", test, name])
        .env("STOREFRONT_BLESS", "1")
        .status()?;
    if !status.success() {
        bail!("could not regenerate ({package} {test})");
    }
    Ok(())
}
