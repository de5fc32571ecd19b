//! `cargo xtask cluster up|down|status`: a real single-node Kubernetes 1.20 on this machine, with
//! no Docker and no registry — the API server, controller-manager, scheduler, kubelet and
//! kube-proxy built from Debian's source package (`cargo xtask install`), etcd, containerd with
//! runc and the CNI bridge plugin from Debian, cluster DNS from dnsmasq, and images imported by
//! `cargo xtask images`.
//!
//! There is one per machine: the pod bridge, its address and the iptables rules are the
//! machine's. Its files live in the tool cache (`~/.cache/storefront/cluster/`: certificates,
//! configuration, etcd and containerd data, logs, pid files), its sockets under
//! `/run/storefront-cluster`. Every listener is on loopback or on the pod bridge
//! ([`GATEWAY`]): the API server sits on the bridge address, so pods reach it through the
//! `kubernetes` Service like in any cluster (the operator runs in-cluster), and the host reaches
//! it there too. A mangle-table rule drops anything a pod would forward off the machine.
//!
//! `down` stops every process by its pid (containers first, so nothing is left holding the
//! pods' network namespaces), unmounts what the runtime mounted, deletes the bridge, removes
//! every iptables rule the kubelet, kube-proxy, the CNI plugins and this module added, and
//! restores the sysctls it changed.
//!
//! By step: `host.rs` (preflight, sysctls, bridge), `pki.rs` (certificates and configuration),
//! `start.rs`, `dns.rs`, `down.rs`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    install::{ClusterTools, cache_dir},
    procs::{self, Proc},
    step,
};

mod dns;
mod down;
mod host;
mod pki;
mod start;

use dns::dns_sync;
pub use down::down;
use host::{MACHINE_PATHS, bridge_exists, preflight, prepare_host};
use pki::{credentials, write_configuration};
use start::start;

/// The node's name (the kubelet's and kube-proxy's, and its credentials' `system:node:` user).
pub const NODE: &str = "storefront";

/// The pod bridge and its address: the pods' gateway, and where the API server, the kubelet and
/// DNS listen for them.
pub const BRIDGE: &str = "storefront0";

pub const GATEWAY: &str = "10.244.0.1";

pub const POD_CIDR: &str = "10.244.0.0/24";

pub const SERVICE_CIDR: &str = "10.96.0.0/24";

/// The first address of the Service range: the `kubernetes` Service.
const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

pub const DNS_IP: &str = "10.96.0.10";

pub const API_SERVER_PORT: u16 = 6443;

const ETCD_PORT: u16 = 23790;

const ETCD_PEER_PORT: u16 = 23800;

const RUN: &str = "/run/storefront-cluster";

/// The comment on the rule that keeps pods from forwarding anything off the machine.
const GUARD: &str = "storefront-cluster-guard";

const PAUSE_IMAGE: &str = "localhost/storefront-dev/pause:3.2";

/// The processes in the order `up` starts them (`down` stops them in reverse), with the program
/// each runs (a pid whose program is another one is not ours any more).
const PROCESSES: [(&str, &str); 9] = [
    ("etcd", "etcd"),
    ("kube-apiserver", "kube-apiserver"),
    ("kube-controller-manager", "kube-controller-manager"),
    ("kube-scheduler", "kube-scheduler"),
    ("containerd", "containerd"),
    ("kubelet", "kubelet"),
    ("kube-proxy", "kube-proxy"),
    ("dnsmasq", "dnsmasq"),
    ("dns-sync", "xtask-dns-sync"),
];

/// The cluster's files.
pub struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    pub fn here() -> Cluster {
        Cluster {
            dir: cache_dir().join("cluster"),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The administrator's kubeconfig (a static token in `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.path("admin.kubeconfig")
    }

    pub fn containerd_socket() -> PathBuf {
        Path::new(RUN).join("containerd/containerd.sock")
    }

    /// Pid files live on the machine's tmpfs, so a reboot never leaves pids that now belong to
    /// other programs.
    fn pid_file(name: &str) -> PathBuf {
        Path::new(RUN).join(format!("pids/{name}.pid"))
    }

    /// The pid of `name`, if it runs (alive, and still the program it was started as).
    fn pid(&self, name: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(Self::pid_file(name))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let program = PROCESSES.iter().find(|(n, _)| *n == name)?.1;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let first = cmdline.split(|b| *b == 0).next()?;
        let ours = Path::new(&*String::from_utf8_lossy(first))
            .file_name()
            .is_some_and(|f| f == program);
        (ours && procs::alive(pid)).then_some(pid)
    }

    fn alive(&self, name: &str) -> bool {
        self.pid(name).is_some()
    }

    /// Every process of the cluster runs.
    pub fn running(&self) -> bool {
        PROCESSES.iter().all(|(name, _)| self.alive(name))
    }

    /// The cluster is the machine's: one `up`, `down`, image import or test phase at a time
    /// (held until the answer is dropped).
    pub fn lock(&self) -> Result<std::fs::File> {
        std::fs::create_dir_all(&self.dir)?;
        let file = std::fs::File::create(self.path(".lock"))?;
        if file.try_lock().is_err() {
            step("waiting for another cargo xtask using the cluster");
            file.lock()?;
        }
        Ok(file)
    }

    pub fn logs(&self) -> PathBuf {
        self.path("logs")
    }

    fn spawn(&self, name: &str, command: &mut Command) -> Result<Proc> {
        let proc = procs::spawn(name, command, &self.logs())?;
        std::fs::create_dir_all(Path::new(RUN).join("pids"))?;
        std::fs::write(Self::pid_file(name), proc.pid.to_string())?;
        Ok(proc)
    }

    /// `kubectl` with the administrator's kubeconfig.
    pub fn kubectl(&self, kubectl: &Path) -> Command {
        let mut command = Command::new(kubectl);
        command.arg("--kubeconfig").arg(self.kubeconfig());
        command
    }
}

/// `cargo xtask cluster …`
pub fn main(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("up") => {
            let tools = ClusterTools::ensure()?;
            let _lock = Cluster::here().lock()?;
            let cluster = up(&tools)?;
            print_status(&cluster, &tools.kubectl);
            Ok(())
        }
        Some("down") => {
            let _lock = Cluster::here().lock()?;
            down()
        }
        Some("status") => {
            let cluster = Cluster::here();
            if !cluster.running() {
                println!("the cluster is not running (cargo xtask cluster up)");
                for (name, _) in PROCESSES {
                    if let Some(pid) = cluster.pid(name) {
                        println!("  but {name} is alive (pid {pid})");
                    }
                }
                return Ok(());
            }
            print_status(&cluster, &crate::install::ManifestTools::kubectl());
            Ok(())
        }
        // The background process `up` leaves behind to keep DNS in step with the Services.
        Some("dns-sync") => dns_sync(args.get(1).context("dns-sync KUBECTL")?),
        _ => bail!("usage: cargo xtask cluster up|down|status"),
    }
}

fn print_status(cluster: &Cluster, kubectl: &Path) {
    let _ = cluster
        .kubectl(kubectl)
        .args(["get", "nodes,pods", "-A", "-o", "wide"])
        .status();
    println!(
        "\nthe cluster runs (Kubernetes 1.20, node {NODE}); use it with\n  export KUBECONFIG={}\n  \
         kubectl (from `cargo xtask install`: {})\nlogs: {}\nstop it with: cargo xtask cluster down",
        cluster.kubeconfig().display(),
        kubectl.display(),
        cluster.logs().display()
    );
}

/// Starts the cluster (or answers the running one) and waits until the node is Ready, DNS
/// answers for Services and the default ServiceAccount exists.
pub fn up(tools: &ClusterTools) -> Result<Cluster> {
    let cluster = Cluster::here();
    if cluster.running() {
        step("the cluster is already running");
        return Ok(cluster);
    }
    preflight(&Cluster::here())?;
    if PROCESSES.iter().any(|(name, _)| cluster.alive(name)) || bridge_exists() {
        step("a partly running cluster is left from before: stopping it first");
        down()?;
    }
    let started = Instant::now();
    for dir in ["run", "logs", "conf/cni", "var/dns", "var/dns-partial"] {
        std::fs::create_dir_all(cluster.path(dir))?;
    }
    // What exists of the machine paths before the kubelet and containerd make them.
    let created = cluster.path("run/created-paths");
    if !created.exists() {
        let absent: Vec<&str> = MACHINE_PATHS
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        std::fs::write(&created, absent.join("\n"))?;
    }
    std::fs::create_dir_all(RUN)?;
    let tokens = credentials(&cluster)?;
    write_configuration(&cluster, &tokens)?;
    prepare_host(&cluster)?;
    match start(&cluster, tools) {
        Ok(()) => {
            step(format!(
                "cluster up in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            Ok(cluster)
        }
        Err(e) => {
            eprintln!(
                "the cluster did not start; stopping what did (logs: {})",
                cluster.logs().display()
            );
            let _ = down();
            Err(e)
        }
    }
}

fn wait(what: &str, deadline: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let until = Instant::now() + deadline;
    while !ready() {
        if Instant::now() > until {
            bail!("{what} not ready within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
