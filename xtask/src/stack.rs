//! The backends, started as processes on loopback under one directory (`.stack/` for `up`,
//! `target/test-stack/` for tests): `data/`, `logs/`, and `stack.json` with ports and pids.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{
    install::{ApiServerTools, Tools},
    pki::{self, Pki},
    procs::{self, Proc},
    step,
};

/// Fixed S3 credentials of the local object store (loopback only).
pub const S3_ACCESS_KEY: &str = "storefront-local";
pub const S3_SECRET_KEY: &str = "storefront-local-secret";
/// The administrator's password of the test stack's secured MongoDB (loopback only).
pub const MONGODB_ROOT_PASSWORD: &str = "storefront-test-root";
/// localstripe accepts any key that looks like a test key.
pub const STRIPE_SECRET_KEY: &str = "sk_test_storefront_local";

/// Where the backends listen.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub mongodb_uri: String,
    pub kafka_bootstrap: String,
    pub redis_url: String,
    pub s3_endpoint: String,
    pub stripe_url: String,
}

impl Endpoints {
    /// The environment the services (and tests) read.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MONGODB_URI", self.mongodb_uri.clone()),
            ("KAFKA_BOOTSTRAP_SERVERS", self.kafka_bootstrap.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("S3_ENDPOINT", self.s3_endpoint.clone()),
            ("S3_ACCESS_KEY", S3_ACCESS_KEY.into()),
            ("S3_SECRET_KEY", S3_SECRET_KEY.into()),
            ("STRIPE_API_BASE", self.stripe_url.clone()),
            ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY.into()),
        ]
    }

    fn to_json(&self) -> Value {
        json!({
            "mongodb_uri": self.mongodb_uri,
            "kafka_bootstrap": self.kafka_bootstrap,
            "redis_url": self.redis_url,
            "s3_endpoint": self.s3_endpoint,
            "stripe_url": self.stripe_url,
        })
    }

    fn from_json(v: &Value) -> Option<Self> {
        let s = |k: &str| v[k].as_str().map(String::from);
        Some(Endpoints {
            mongodb_uri: s("mongodb_uri")?,
            kafka_bootstrap: s("kafka_bootstrap")?,
            redis_url: s("redis_url")?,
            s3_endpoint: s("s3_endpoint")?,
            stripe_url: s("stripe_url")?,
        })
    }
}

/// A running stack: what it started (in order) and where the backends are.
pub struct Stack {
    pub dir: PathBuf,
    pub procs: Vec<Proc>,
    pub endpoints: Endpoints,
}

/// Whether the backends keep data across restarts (`up`) or start empty (tests, benches).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    Keep,
    Ephemeral,
    /// Kept, and MongoDB writes its log to disk at every commit (`--sync-on-commit`), so a
    /// SIGKILL loses no write it acknowledged; the broker keeps its log in SQLite
    /// ([`Tools::tansu_sqlite`]): the fault test's backends, which it kills.
    Durable,
}

impl Stack {
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Starts every backend and waits until each accepts connections. On failure, stops what
    /// already started.
    pub fn start_backends(dir: &Path, tools: &Tools, persistence: Persistence) -> Result<Stack> {
        std::fs::create_dir_all(dir.join("data"))?;
        let mut stack = Stack {
            dir: dir.to_path_buf(),
            procs: Vec::new(),
            endpoints: Endpoints {
                mongodb_uri: String::new(),
                kafka_bootstrap: String::new(),
                redis_url: String::new(),
                s3_endpoint: String::new(),
                stripe_url: String::new(),
            },
        };
        match stack.start_all(tools, persistence) {
            Ok(()) => Ok(stack),
            Err(e) => {
                stack.stop();
                Err(e)
            }
        }
    }

    fn start_all(&mut self, tools: &Tools, persistence: Persistence) -> Result<()> {
        let data = self.dir.join("data");
        let logs = self.logs();

        let port = procs::free_port()?;
        let storage = match persistence {
            Persistence::Keep | Persistence::Durable => {
                let path = data.join("mongodb");
                std::fs::create_dir_all(&path)?;
                path.display().to_string()
            }
            Persistence::Ephemeral => ":memory:".into(),
        };
        let mut command = tools.secantusd_command();
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--storage-path",
                &storage,
            ])
            .args(["--log-level", "WARNING"]);
        if persistence == Persistence::Durable {
            command.arg("--sync-on-commit");
        }
        let mongo = procs::spawn("mongodb", &mut command, &logs)?;
        self.started(mongo, port, Duration::from_secs(30), "MongoDB (SecantusDB)")?;
        self.endpoints.mongodb_uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");

        let port = procs::free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = match persistence {
            // The log, topics and group offsets in SQLite, so a SIGKILLed broker comes back with
            // them, as a Kafka on a disk does. tansu resolves an absolute sqlite path wrongly: the
            // file is named relative to the broker's working directory.
            Persistence::Durable => {
                let program = tools.tansu_sqlite.as_ref().context(
                    "a durable stack needs tansu with SQLite storage (install::tansu_sqlite)",
                )?;
                let dir = data.join("kafka");
                std::fs::create_dir_all(&dir)?;
                let mut command = Command::new(program);
                command
                    .current_dir(&dir)
                    .args(["broker", "--storage-engine", "sqlite://tansu.db"]);
                command
            }
            // In memory: these stacks start empty (tests, benches) or are the developer's (`up`),
            // where a restarted broker starting empty costs nothing but the events in flight.
            // tansu on S3 (the stand-in's files) would keep its log, but lists a partition's
            // objects at every fetch, so delivery slows as they pile up.
            Persistence::Keep | Persistence::Ephemeral => {
                let mut command = Command::new(&tools.tansu);
                command.args(["broker", "--storage-engine", "memory://tansu/"]);
                command
            }
        };
        let kafka = procs::spawn(
            "kafka",
            command
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                // `STOREFRONT_KAFKA_LOG=warn,tansu_broker::coordinator=debug` follows the broker's
                // consumer groups (their joins, syncs and missed heartbeats).
                .env(
                    "RUST_LOG",
                    std::env::var("STOREFRONT_KAFKA_LOG").unwrap_or_else(|_| "warn".into()),
                ),
            &logs,
        )?;
        self.started(kafka, port, Duration::from_secs(30), "Kafka (tansu)")?;
        self.endpoints.kafka_bootstrap = format!("127.0.0.1:{port}");

        let port = procs::free_port()?;
        let redis_dir = data.join("redis");
        std::fs::create_dir_all(&redis_dir)?;
        let redis = procs::spawn(
            "redis",
            Command::new(&tools.redis_server)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--daemonize", "no", "--protected-mode", "yes"])
                .arg("--dir")
                .arg(&redis_dir),
            &logs,
        )?;
        self.started(redis, port, Duration::from_secs(15), "Redis")?;
        self.endpoints.redis_url = format!("redis://127.0.0.1:{port}");

        let port = procs::free_port()?;
        let s3_dir = data.join("s3");
        std::fs::create_dir_all(&s3_dir)?;
        let s3 = procs::spawn(
            "s3",
            Command::new(&tools.s3s_fs)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(&s3_dir),
            &logs,
        )?;
        self.started(s3, port, Duration::from_secs(15), "S3 (s3s-fs)")?;
        self.endpoints.s3_endpoint = format!("http://127.0.0.1:{port}");

        let port = procs::free_port()?;
        let stripe = procs::spawn(
            "stripe",
            Command::new(&tools.localstripe_python)
                .arg(&tools.localstripe_launcher)
                .args(["--port", &port.to_string()]),
            &logs,
        )?;
        self.started(
            stripe,
            port,
            Duration::from_secs(30),
            "Stripe (localstripe)",
        )?;
        self.endpoints.stripe_url = format!("http://127.0.0.1:{port}");
        Ok(())
    }

    /// A second MongoDB that demands authentication, for the operator's database-user tests:
    /// started once open to make its administrator, then again with `--auth`. Answers the
    /// administrator's connection string.
    pub fn start_secured_mongodb(&mut self, tools: &Tools) -> Result<String> {
        let logs = self.logs();
        let storage = self.dir.join("data").join("mongodb-auth");
        std::fs::create_dir_all(&storage)?;
        let port = procs::free_port()?;
        let start = |auth: bool| {
            let mut command = tools.secantusd_command();
            command
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--storage-path")
                .arg(&storage)
                .args(["--log-level", "WARNING"]);
            if auth {
                command.arg("--auth");
            }
            procs::spawn("mongodb-auth", &mut command, &logs)
        };
        let open = start(false)?;
        let result = procs::wait_for_port(&open, port, Duration::from_secs(30)).and_then(|()| {
            // The driver is in SecantusDB's own environment (pymongo).
            let python = &tools.secantusd_python;
            crate::install::run(
                Command::new(python).arg("-c").arg(format!(
                    "import pymongo; pymongo.MongoClient('mongodb://127.0.0.1:{port}/?directConnection=true')\
                     .admin.command('createUser', 'root', pwd='{MONGODB_ROOT_PASSWORD}', roles=['root'])"
                )),
                "make the secured MongoDB's administrator",
            )
        });
        procs::stop(&open, Duration::from_secs(10));
        result?;
        let secured = start(true)?;
        self.started(
            secured,
            port,
            Duration::from_secs(30),
            "MongoDB with authentication (SecantusDB --auth)",
        )?;
        Ok(format!(
            "mongodb://root:{MONGODB_ROOT_PASSWORD}@127.0.0.1:{port}/?directConnection=true&authSource=admin"
        ))
    }

    /// A real Kubernetes API server (and its etcd) on loopback, for the operator's tests and
    /// benchmark: certificates made with openssl, a static admin token, RBAC on. Answers the
    /// kubeconfig's path once the server says it is ready.
    pub fn start_api_server(&mut self, tools: &ApiServerTools, kubectl: &Path) -> Result<PathBuf> {
        let logs = self.logs();
        let dir = self.dir.join("data").join("kubernetes");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let file = |name: &str| dir.join(name);
        let pki = Pki::create(&dir, "storefront-test-ca")?;
        pki.server_certificate("server", &["IP:127.0.0.1", "DNS:localhost"])?;
        pki.rsa_key("service-accounts.key")?;
        let token = pki::token();
        std::fs::write(
            file("tokens.csv"),
            format!("{token},storefront-test-admin,storefront-test-admin,system:masters\n"),
        )?;

        let [client_port, peer_port] = procs::free_ports::<2>()?;
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = procs::spawn(
            "etcd",
            Command::new(&tools.etcd)
                .arg("--data-dir")
                .arg(file("etcd"))
                .args(["--listen-client-urls", &etcd_url])
                .args(["--advertise-client-urls", &etcd_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("default={peer_url}")])
                .args(["--log-level", "warn"]),
            &logs,
        )?;
        self.started(etcd, client_port, Duration::from_secs(30), "etcd")?;

        let port = procs::free_port()?;
        let path = |name: &str| file(name).display().to_string();
        let server = procs::spawn(
            "kube-apiserver",
            Command::new(&tools.kube_apiserver)
                .args(["--etcd-servers", &etcd_url])
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--advertise-address",
                    "127.0.0.1",
                ])
                .args(["--secure-port", &port.to_string(), "--insecure-port", "0"])
                .args(["--cert-dir", &path("certs")])
                .args(["--tls-cert-file", &path("server.crt")])
                .args(["--tls-private-key-file", &path("server.key")])
                .args(["--client-ca-file", &path("ca.crt")])
                .args(["--service-cluster-ip-range", "10.96.0.0/24"])
                .args(["--service-account-key-file", &path("service-accounts.key")])
                .args([
                    "--service-account-signing-key-file",
                    &path("service-accounts.key"),
                ])
                .args(["--service-account-issuer", "https://kubernetes.default.svc"])
                .args(["--token-auth-file", &path("tokens.csv")])
                .args(["--authorization-mode", "RBAC"])
                .args(["--disable-admission-plugins", "ServiceAccount"])
                .args(["--enable-priority-and-fairness=false", "--v", "0"]),
            &logs,
        )?;
        self.started(
            server,
            port,
            Duration::from_secs(60),
            "Kubernetes API server (1.20)",
        )?;
        let kubeconfig = file("kubeconfig");
        std::fs::write(
            &kubeconfig,
            pki::kubeconfig(
                &format!("https://127.0.0.1:{port}"),
                &file("ca.crt"),
                "admin",
                &token,
            ),
        )?;
        // Ready: every post-start hook done (the built-in RBAC roles among them).
        let until = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return Ok(kubeconfig);
            }
            if std::time::Instant::now() > until {
                bail!(
                    "the Kubernetes API server did not become ready (log: {}/kube-apiserver.log)",
                    logs.display()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Records a started process once its port is open.
    pub fn started(&mut self, proc: Proc, port: u16, deadline: Duration, what: &str) -> Result<()> {
        let result = procs::wait_for_port(&proc, port, deadline);
        self.procs.push(proc);
        result.with_context(|| format!("{what} did not start"))?;
        step(format!("{what} on 127.0.0.1:{port}"));
        Ok(())
    }

    /// Stops everything, newest first.
    pub fn stop(&self) {
        for proc in self.procs.iter().rev() {
            procs::stop(proc, Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(self.dir.join("stack.json"));
    }

    pub fn save(&self, extra: Value) -> Result<()> {
        let state = json!({
            "xtask_pid": std::process::id(),
            "endpoints": self.endpoints.to_json(),
            "procs": self.procs.iter().map(Proc::to_json).collect::<Vec<_>>(),
            "extra": extra,
        });
        std::fs::write(
            self.dir.join("stack.json"),
            serde_json::to_vec_pretty(&state)?,
        )?;
        Ok(())
    }

    /// The stack recorded in `dir`, if its file exists.
    pub fn load(dir: &Path) -> Option<Stack> {
        let text = std::fs::read_to_string(dir.join("stack.json")).ok()?;
        let state: Value = serde_json::from_str(&text).ok()?;
        Some(Stack {
            dir: dir.to_path_buf(),
            procs: state["procs"]
                .as_array()?
                .iter()
                .filter_map(Proc::from_json)
                .collect(),
            endpoints: Endpoints::from_json(&state["endpoints"])?,
        })
    }

    pub fn any_alive(&self) -> bool {
        self.procs.iter().any(|p| procs::alive(p.pid))
    }
}
