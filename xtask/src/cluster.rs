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

use std::{
    collections::BTreeMap,
    io::BufReader,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    images,
    install::{ClusterTools, cache_dir, run},
    pki::{self, Pki},
    procs::{self, Proc},
    root, step,
};

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
/// The sysctls `up` sets.
const SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
];
/// Every sysctl the cluster changes, saved by `up` and restored by `down`: ours, kube-proxy's
/// `route_localnet` (left on without kube-proxy's firewall rule it lets the network reach
/// loopback services: CVE-2020-8558), and the kernel settings the kubelet sets for itself.
const SYSCTLS_RESTORED: [&str; 9] = [
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.ipv4.conf.all.route_localnet",
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
];
/// Machine paths the kubelet and containerd use whatever they are told; `down` removes those
/// that did not exist before `up`.
const MACHINE_PATHS: [&str; 5] = [
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/run/containerd",
    "/usr/libexec/kubernetes",
];
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

/// Free space the cluster's filesystem needs: the images (about 0.7 GiB imported), the pods' data,
/// and the kubelet's eviction threshold (1 GiB, `xtask/assets/cluster/kubelet.yaml`), under which
/// it deletes every image no pod runs yet, the ones just imported included.
const MIN_FREE_BYTES: u64 = 3 << 30;

/// What this cluster needs of the machine, checked before anything is changed: root (it makes a
/// bridge, iptables rules and mounts), cgroup v1 (what Kubernetes 1.20's kubelet runs on here) and
/// room on the disk.
fn preflight(cluster: &Cluster) -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        bail!("the cluster needs root: it makes a network bridge, iptables rules and mounts");
    }
    let filesystem = Command::new("stat")
        .args(["-f", "-c", "%T", "/sys/fs/cgroup"])
        .output()?;
    if String::from_utf8_lossy(&filesystem.stdout).trim() == "cgroup2fs" {
        bail!(
            "/sys/fs/cgroup is cgroup v2 only; the kubelet of Kubernetes 1.20 built here runs on \
             cgroup v1 (boot with systemd.unified_cgroup_hierarchy=0)"
        );
    }
    std::fs::create_dir_all(&cluster.dir)?;
    let free = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(&cluster.dir)
        .output()?;
    let free = String::from_utf8_lossy(&free.stdout);
    let free = match free.split_whitespace().collect::<Vec<_>>()[..] {
        [blocks, size] => blocks.parse::<u64>().ok().zip(size.parse::<u64>().ok()),
        _ => None,
    }
    .map(|(blocks, size)| blocks * size)
    .with_context(|| format!("stat -f {}: {free}", cluster.dir.display()))?;
    if free < MIN_FREE_BYTES {
        bail!(
            "the cluster needs {:.1} GiB free on the filesystem of {}, which has {:.1} GiB",
            MIN_FREE_BYTES as f64 / f64::from(1 << 30),
            cluster.dir.display(),
            free as f64 / f64::from(1 << 30),
        );
    }
    Ok(())
}

/// The component identities: a token each (static token file), made once with the certificates.
struct Tokens(BTreeMap<&'static str, String>);

const IDENTITIES: [(&str, &str, &str); 5] = [
    // file name, user, group
    ("admin", "storefront-admin", "system:masters"),
    ("kubelet", "system:node:storefront", "system:nodes"),
    ("controller-manager", "system:kube-controller-manager", ""),
    ("scheduler", "system:kube-scheduler", ""),
    ("kube-proxy", "system:kube-proxy", ""),
];

/// Certificates and tokens, made the first time (and again when the certificates are within a
/// week of their end): a CA, the API server's serving certificate (for the bridge address, the
/// `kubernetes` Service and its names), its client certificate towards the kubelet, the
/// service-account signing key, and a token per component. Only root may read them.
fn credentials(cluster: &Cluster) -> Result<Tokens> {
    let dir = cluster.path("pki");
    let tokens_file = dir.join("tokens.csv");
    let lasting = Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "604800", "-in"])
        .arg(dir.join("apiserver.crt"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !tokens_file.exists() || !lasting {
        step("making the cluster's certificates and tokens");
        let _ = std::fs::remove_dir_all(&dir);
        let pki = Pki::create(&dir, "storefront-cluster-ca")?;
        pki.server_certificate(
            "apiserver",
            &[
                &format!("IP:{GATEWAY}"),
                &format!("IP:{KUBERNETES_SERVICE_IP}"),
                "IP:127.0.0.1",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ],
        )?;
        pki.client_certificate(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
        )?;
        pki.rsa_key("service-accounts.key")?;
        let lines: String = IDENTITIES
            .iter()
            .map(|(_, user, group)| format!("{},{user},{user},{group}\n", pki::token()))
            .collect();
        std::fs::write(&tokens_file, lines)?;
        private(&dir)?;
    }
    let text = std::fs::read_to_string(&tokens_file)?;
    let mut tokens = BTreeMap::new();
    for ((name, user, _), line) in IDENTITIES.iter().zip(text.lines()) {
        let mut fields = line.split(',');
        let token = fields.next().unwrap_or_default();
        if fields.next() != Some(user) {
            bail!(
                "{} does not match this xtask: remove {} and run again",
                tokens_file.display(),
                dir.display()
            );
        }
        tokens.insert(*name, token.to_owned());
    }
    Ok(Tokens(tokens))
}

/// The configuration files, from `xtask/assets/cluster/` with this machine's paths filled in.
fn write_configuration(cluster: &Cluster, tokens: &Tokens) -> Result<()> {
    let fill = |template: &str| {
        template
            .replace("@STATE@", &cluster.path("var").display().to_string())
            .replace("@RUN@", RUN)
            .replace("@CONF@", &cluster.path("conf").display().to_string())
            .replace("@PKI@", &cluster.path("pki").display().to_string())
            .replace("@BRIDGE@", BRIDGE)
            .replace("@GATEWAY@", GATEWAY)
            .replace("@POD_CIDR@", POD_CIDR)
            .replace("@DNS_IP@", DNS_IP)
            .replace("@NODE@", NODE)
            .replace("@PAUSE_IMAGE@", PAUSE_IMAGE)
    };
    let assets = root().join("xtask/assets/cluster");
    for (asset, target) in [
        ("containerd.toml", "conf/containerd.toml"),
        ("cni.conflist", "conf/cni/10-storefront.conflist"),
        ("kubelet.yaml", "conf/kubelet.yaml"),
        ("kube-proxy.yaml", "conf/kube-proxy.yaml"),
        ("kube-dns.yaml", "conf/kube-dns.yaml"),
    ] {
        let template = std::fs::read_to_string(assets.join(asset))
            .with_context(|| format!("read xtask/assets/cluster/{asset}"))?;
        std::fs::write(cluster.path(target), fill(&template))?;
    }
    // No nameserver that points off this machine: pods resolve only through cluster DNS.
    std::fs::write(
        cluster.path("conf/resolv.conf"),
        "# pods get the cluster's DNS only\nsearch storefront.invalid\n",
    )?;
    let server = format!("https://{GATEWAY}:{API_SERVER_PORT}");
    let ca = cluster.path("pki/ca.crt");
    for (name, user, _) in IDENTITIES {
        let target = if name == "admin" {
            cluster.kubeconfig()
        } else {
            cluster.path(&format!("conf/{name}.kubeconfig"))
        };
        std::fs::write(
            &target,
            pki::kubeconfig(&server, &ca, user, &tokens.0[name]),
        )?;
        private(&target)?;
    }
    Ok(())
}

/// Readable by root only (a file, or a directory and everything in it).
fn private(path: &Path) -> Result<()> {
    run(
        Command::new("chmod").args(["-R", "go-rwx"]).arg(path),
        "make credentials private",
    )
}

fn bridge_exists() -> bool {
    Path::new("/sys/class/net").join(BRIDGE).exists()
}

fn sysctl_read(name: &str) -> Result<String> {
    let output = Command::new("sysctl").args(["-n", name]).output()?;
    if !output.status.success() {
        bail!("sysctl {name}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn sysctl_write(name: &str, value: &str) -> Result<()> {
    run(
        Command::new("sysctl").args(["-qw", &format!("{name}={value}")]),
        "set a sysctl",
    )
}

/// The host side: bridge netfilter, forwarding (the old values saved for `down`), the guard rule,
/// and the pod bridge with its address (before the API server binds to it).
fn prepare_host(cluster: &Cluster) -> Result<()> {
    let saved = cluster.path("run/sysctls");
    if !saved.exists() {
        // br_netfilter is built in on these kernels; elsewhere it may be a module.
        let _ = Command::new("modprobe").arg("br_netfilter").status();
        let mut lines = String::new();
        for name in SYSCTLS_RESTORED {
            lines.push_str(&format!("{name}={}\n", sysctl_read(name)?));
        }
        std::fs::write(&saved, lines)?;
    }
    for (name, value) in SYSCTLS {
        sysctl_write(name, value)?;
    }
    let guard = [
        "FORWARD",
        "-i",
        BRIDGE,
        "!",
        "-o",
        BRIDGE,
        "-m",
        "comment",
        "--comment",
        GUARD,
        "-j",
        "DROP",
    ];
    let present = Command::new("iptables")
        .args(["-t", "mangle", "-C"])
        .args(guard)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        run(
            Command::new("iptables")
                .args(["-t", "mangle", "-I"])
                .args(guard),
            "add the guard rule (pods never forward off the machine)",
        )?;
    }
    // What listens on the bridge address (API server, kubelet, DNS) answers only the host itself
    // and the pods, never the machine's network (which could route to it through this host).
    let gateway = format!("{GATEWAY}/32");
    let input: [&[&str]; 3] = [
        &["-i", "lo", "-j", "ACCEPT"],
        &["-i", BRIDGE, "-j", "ACCEPT"],
        &["-j", "DROP"],
    ];
    for (position, rule) in input.iter().enumerate() {
        let mut full = vec!["INPUT", "-d", &gateway];
        full.extend_from_slice(rule);
        full.extend_from_slice(&["-m", "comment", "--comment", GUARD]);
        let present = Command::new("iptables")
            .arg("-C")
            .args(&full)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            let at = (position + 1).to_string();
            run(
                Command::new("iptables")
                    .args(["-I", "INPUT", &at])
                    .args(&full[1..]),
                "add the guard rules for the bridge address",
            )?;
        }
    }
    if !bridge_exists() {
        run(
            Command::new("ip").args(["link", "add", BRIDGE, "type", "bridge"]),
            "make the pod bridge",
        )?;
    }
    let address = format!("{GATEWAY}/24");
    let addresses = Command::new("ip")
        .args(["-4", "addr", "show", "dev", BRIDGE])
        .output()?;
    if !String::from_utf8_lossy(&addresses.stdout).contains(&address) {
        run(
            Command::new("ip").args(["addr", "add", &address, "dev", BRIDGE]),
            "give the pod bridge its address",
        )?;
    }
    run(
        Command::new("ip").args(["link", "set", BRIDGE, "up"]),
        "bring the pod bridge up",
    )
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

fn start(cluster: &Cluster, tools: &ClusterTools) -> Result<()> {
    let path = |p: &str| cluster.path(p).display().to_string();
    let pki = |f: &str| path(&format!("pki/{f}"));
    let conf = |f: &str| path(&format!("conf/{f}"));
    let etcd_url = format!("http://127.0.0.1:{ETCD_PORT}");
    let peer_url = format!("http://127.0.0.1:{ETCD_PEER_PORT}");
    let etcd = cluster.spawn(
        "etcd",
        Command::new(&tools.etcd)
            .args(["--name", "storefront", "--data-dir", &path("var/etcd")])
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("storefront={peer_url}")])
            .args(["--listen-metrics-urls", "http://127.0.0.1:23810"])
            .args(["--log-level", "warn"]),
    )?;
    procs::wait_for_port(&etcd, ETCD_PORT, Duration::from_secs(30))?;

    let apiserver = cluster.spawn(
        "kube-apiserver",
        Command::new(&tools.kube_apiserver)
            .args(["--etcd-servers", &etcd_url])
            .args(["--bind-address", GATEWAY, "--advertise-address", GATEWAY])
            .args([
                "--secure-port",
                &API_SERVER_PORT.to_string(),
                "--insecure-port",
                "0",
            ])
            .args(["--cert-dir", &path("var/apiserver-certs")])
            .args(["--tls-cert-file", &pki("apiserver.crt")])
            .args(["--tls-private-key-file", &pki("apiserver.key")])
            .args(["--client-ca-file", &pki("ca.crt")])
            .args(["--token-auth-file", &pki("tokens.csv")])
            .args(["--service-cluster-ip-range", SERVICE_CIDR])
            .args(["--service-node-port-range", "30000-30100"])
            .args(["--service-account-key-file", &pki("service-accounts.key")])
            .args([
                "--service-account-signing-key-file",
                &pki("service-accounts.key"),
            ])
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args(["--authorization-mode", "Node,RBAC"])
            .args(["--enable-admission-plugins", "NodeRestriction"])
            .args([
                "--kubelet-client-certificate",
                &pki("apiserver-kubelet-client.crt"),
            ])
            .args(["--kubelet-client-key", &pki("apiserver-kubelet-client.key")])
            .args(["--kubelet-preferred-address-types", "InternalIP"])
            .args(["--enable-priority-and-fairness=false", "--v", "1"]),
    )?;
    wait("the API server", Duration::from_secs(90), || {
        if !procs::alive(apiserver.pid) {
            return true;
        }
        succeeds(
            cluster
                .kubectl(&tools.kubectl)
                .args(["get", "--raw", "/readyz"]),
        )
    })?;
    if !procs::alive(apiserver.pid) {
        bail!(
            "the API server exited; its log ends:\n{}",
            procs::tail(&apiserver.log, 20)
        );
    }
    step(format!("API server on https://{GATEWAY}:{API_SERVER_PORT}"));

    cluster.spawn(
        "kube-controller-manager",
        Command::new(&tools.kube_controller_manager)
            .args(["--kubeconfig", &conf("controller-manager.kubeconfig")])
            .args([
                "--authentication-kubeconfig",
                &conf("controller-manager.kubeconfig"),
            ])
            .args([
                "--authorization-kubeconfig",
                &conf("controller-manager.kubeconfig"),
            ])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                "10257",
                "--port",
                "0",
            ])
            .args(["--cert-dir", &path("var/controller-manager-certs")])
            .args([
                "--leader-elect=false",
                "--use-service-account-credentials=true",
            ])
            .args([
                "--service-account-private-key-file",
                &pki("service-accounts.key"),
            ])
            .args(["--root-ca-file", &pki("ca.crt")])
            .args(["--cluster-signing-cert-file", &pki("ca.crt")])
            .args(["--cluster-signing-key-file", &pki("ca.key")])
            .args(["--service-cluster-ip-range", SERVICE_CIDR, "--v", "1"]),
    )?;
    cluster.spawn(
        "kube-scheduler",
        Command::new(&tools.kube_scheduler)
            .args(["--kubeconfig", &conf("scheduler.kubeconfig")])
            .args(["--authentication-kubeconfig", &conf("scheduler.kubeconfig")])
            .args(["--authorization-kubeconfig", &conf("scheduler.kubeconfig")])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                "10259",
                "--port",
                "0",
            ])
            .args(["--cert-dir", &path("var/scheduler-certs")])
            .args(["--leader-elect=false", "--v", "1"]),
    )?;

    let containerd = cluster.spawn(
        "containerd",
        Command::new("containerd").args(["--config", &conf("containerd.toml")]),
    )?;
    let socket = Cluster::containerd_socket();
    wait("containerd", Duration::from_secs(60), || {
        !procs::alive(containerd.pid)
            || succeeds(
                Command::new("ctr")
                    .arg("--address")
                    .arg(&socket)
                    .arg("version"),
            )
    })?;
    if !procs::alive(containerd.pid) {
        bail!(
            "containerd exited; its log ends:\n{}",
            procs::tail(&containerd.log, 20)
        );
    }
    import_pause(cluster, tools)?;

    cluster.spawn(
        "kubelet",
        Command::new(&tools.kubelet)
            .args(["--config", &conf("kubelet.yaml")])
            .args(["--kubeconfig", &conf("kubelet.kubeconfig")])
            .args(["--container-runtime", "remote"])
            .arg("--container-runtime-endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(["--root-dir", &path("var/kubelet")])
            .args(["--cert-dir", &path("var/kubelet-pki")])
            .args(["--hostname-override", NODE, "--node-ip", GATEWAY])
            .args(["--v", "1"]),
    )?;
    cluster.spawn(
        "kube-proxy",
        Command::new(&tools.kube_proxy).args(["--config", &conf("kube-proxy.yaml"), "--v", "1"]),
    )?;
    wait(&format!("node {NODE}"), Duration::from_secs(120), || {
        succeeds(cluster.kubectl(&tools.kubectl).args([
            "wait",
            "--for=condition=Ready",
            &format!("node/{NODE}"),
            "--timeout=2s",
        ]))
    })?;
    step(format!("node {NODE} Ready"));

    run(
        cluster
            .kubectl(&tools.kubectl)
            .args(["apply", "-f", &conf("kube-dns.yaml")]),
        "apply the kube-dns Service",
    )?;
    let hosts = cluster.path("var/dns");
    let dnsmasq = cluster.spawn(
        "dnsmasq",
        Command::new(&tools.dnsmasq)
            .args([
                "--keep-in-foreground",
                "--log-facility=-",
                "--no-resolv",
                "--no-hosts",
            ])
            .args(["--no-poll", "--bind-interfaces", "--port=53", "--pid-file="])
            .arg(format!("--listen-address={GATEWAY}"))
            .arg(format!("--hostsdir={}", hosts.display()))
            .args([
                "--local=/cluster.local/",
                "--domain-needed",
                "--local-ttl=5",
            ])
            // The hosts file lives under the cache in root's home, which dnsmasq's usual
            // unprivileged user cannot read.
            .arg("--user=root"),
    )?;
    // The sync runs from a copy of this program, so rebuilding xtask does not touch it. Copied
    // from /proc/self/exe, the image this process runs: `cargo xtask test` rebuilds xtask's
    // binary on the way (xtask has integration tests), and the path it was started from then
    // names another file, or none.
    let sync = cluster.path("run/xtask-dns-sync");
    std::fs::copy("/proc/self/exe", &sync).context("copy this program for the DNS sync")?;
    cluster.spawn(
        "dns-sync",
        Command::new(&sync)
            .args(["cluster", "dns-sync"])
            .arg(&tools.kubectl)
            .env("STOREFRONT_CLUSTER_DIR", &cluster.dir),
    )?;
    wait("cluster DNS", Duration::from_secs(30), || {
        !procs::alive(dnsmasq.pid)
            || std::fs::read_to_string(hosts.join("services"))
                .is_ok_and(|s| s.contains("kubernetes.default.svc.cluster.local"))
    })?;
    if !procs::alive(dnsmasq.pid) {
        bail!(
            "dnsmasq exited; its log ends:\n{}",
            procs::tail(&dnsmasq.log, 20)
        );
    }
    wait(
        "the default ServiceAccount",
        Duration::from_secs(60),
        || {
            succeeds(
                cluster
                    .kubectl(&tools.kubectl)
                    .args(["get", "serviceaccount", "default"]),
            )
        },
    )
}

/// The pod sandbox image, built once from `xtask/assets/cluster/pause.c` and imported.
fn import_pause(cluster: &Cluster, tools: &ClusterTools) -> Result<()> {
    let socket = Cluster::containerd_socket();
    if images::imported(&socket)?.contains(PAUSE_IMAGE) {
        return Ok(());
    }
    let work = cluster.path("var/images/pause");
    let tree = images::Tree::new(work.join("tree"))?;
    tree.copy(&tools.pause, "/pause", 0o755)?;
    let image =
        images::Image::new(PAUSE_IMAGE.into(), vec![tree.path()], &["/pause"]).user("65535:65535");
    images::build_and_import(&image, &work, &socket)
}

/// `cargo xtask cluster down`: everything `up` started and changed, undone.
pub fn down() -> Result<()> {
    let cluster = Cluster::here();
    let socket = Cluster::containerd_socket();
    let stop = |name: &str| {
        if let Some(pid) = cluster.pid(name) {
            procs::stop(
                &Proc {
                    name: name.to_owned(),
                    pid,
                    log: cluster.logs().join(format!("{name}.log")),
                },
                Duration::from_secs(10),
            );
            step(format!("stopped {name} ({pid})"));
        }
        let _ = std::fs::remove_file(Cluster::pid_file(name));
    };
    // The kubelet first, so it does not restart the containers stopped next.
    stop("kubelet");
    let mut namespaces = Vec::new();
    if cluster.alive("containerd") {
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .args(["--namespace", "k8s.io"])
                .args(args)
                .output()
        };
        let ids = |args: &[&str]| -> Vec<String> {
            ctr(args)
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        // The pods' network namespaces, from our containers' specs: only these are removed.
        for container in ids(&["containers", "list", "--quiet"]) {
            let Ok(info) = ctr(&["containers", "info", &container]) else {
                continue;
            };
            let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap_or_default();
            for namespace in info["Spec"]["linux"]["namespaces"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if namespace["type"] == "network"
                    && let Some(path) = namespace["path"].as_str()
                    && !path.is_empty()
                    && !namespaces.iter().any(|p| p == path)
                {
                    namespaces.push(path.to_owned());
                }
            }
        }
        let tasks = ids(&["tasks", "list", "--quiet"]);
        for task in &tasks {
            let _ = ctr(&["tasks", "kill", "--signal", "SIGKILL", task]);
        }
        let until = Instant::now() + Duration::from_secs(10);
        while !ids(&["tasks", "list", "--quiet"]).is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        for task in ids(&["tasks", "list", "--quiet"]) {
            let _ = ctr(&["tasks", "delete", "--force", &task]);
        }
        for container in ids(&["containers", "list", "--quiet"]) {
            let _ = ctr(&["containers", "delete", &container]);
        }
        if !tasks.is_empty() {
            step(format!("stopped {} containers", tasks.len()));
        }
    }
    for (name, _) in PROCESSES.iter().rev() {
        stop(name);
    }
    // Shims whose containers are gone exit by themselves; any left are ours (our socket).
    let _ = Command::new("pkill")
        .args(["-KILL", "-f"])
        .arg(format!(
            "containerd-shim-runc-v2 .*-address {}",
            socket.display()
        ))
        .status();
    unmount_all(&cluster, &namespaces)?;
    for path in &namespaces {
        if let Some(name) = Path::new(path).file_name() {
            let _ = Command::new("ip")
                .args(["netns", "delete"])
                .arg(name)
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_file(path);
    }
    if bridge_exists() {
        run(
            Command::new("ip").args(["link", "delete", BRIDGE]),
            "delete the pod bridge",
        )?;
        step(format!("deleted the bridge {BRIDGE}"));
    }
    clean_iptables()?;
    remove_cgroups();
    let _ = std::fs::remove_dir_all(cluster.path("var/cni-ipam"));
    let _ = std::fs::remove_dir_all(RUN);
    let created = cluster.path("run/created-paths");
    if let Ok(text) = std::fs::read_to_string(&created) {
        for path in text.lines().filter(|p| MACHINE_PATHS.contains(p)) {
            if std::fs::remove_dir_all(path).is_ok() {
                step(format!("removed {path}"));
            }
        }
        std::fs::remove_file(&created)?;
    }
    let saved = cluster.path("run/sysctls");
    if let Ok(text) = std::fs::read_to_string(&saved) {
        for line in text.lines() {
            if let Some((name, value)) = line.split_once('=') {
                sysctl_write(name, value)?;
            }
        }
        std::fs::remove_file(&saved)?;
        step(format!("restored {}", text.trim().replace('\n', ", ")));
    }
    step("the cluster is stopped");
    Ok(())
}

/// Unmounts what containerd and the kubelet mounted under the cluster's directories, deepest
/// first, and the pods' network namespaces (`namespaces`, from our containers).
fn unmount_all(cluster: &Cluster, namespaces: &[String]) -> Result<()> {
    let mut prefixes = vec![cluster.dir.display().to_string(), RUN.to_owned()];
    for path in namespaces {
        prefixes.push(path.clone());
        // /var/run is /run: the mount table shows either.
        prefixes.push(path.replacen("/var/run/", "/run/", 1));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| prefixes.iter().any(|p| point.starts_with(p.as_str())))
        .collect();
    points.sort_unstable_by(|a, b| b.cmp(a));
    points.dedup();
    for point in &points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
    if !points.is_empty() {
        step(format!("unmounted {} mounts", points.len()));
    }
    Ok(())
}

/// Removes every rule and chain the kubelet, kube-proxy, the CNI plugins and the guard added,
/// keeping everything else in each table.
fn clean_iptables() -> Result<()> {
    let ours = |line: &str| line.contains("KUBE-") || line.contains("CNI-") || line.contains(GUARD);
    for (save, restore) in [
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ] {
        for table in ["filter", "nat", "mangle", "raw"] {
            let Ok(output) = Command::new(save).args(["-t", table]).output() else {
                continue;
            };
            let rules = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() || !rules.lines().any(ours) {
                continue;
            }
            let kept: String = rules
                .lines()
                .filter(|l| !ours(l))
                .map(|l| format!("{l}\n"))
                .collect();
            let mut child = Command::new(restore)
                .args(["-T", table])
                .stdin(Stdio::piped())
                .spawn()?;
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(kept.as_bytes())?;
            if !child.wait()?.success() {
                bail!("{restore} -T {table} failed");
            }
            step(format!("removed the cluster's {save} rules in {table}"));
        }
    }
    Ok(())
}

/// The kubelet's cgroups (`kubepods` in every v1 hierarchy), deepest first.
fn remove_cgroups() {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let pods = hierarchy.path().join("kubepods");
        if pods.is_dir() {
            let _ = Command::new("find")
                .arg(&pods)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Keeps dnsmasq's hosts file equal to the cluster's Services (`{name}.{namespace}.svc.cluster.local`
/// → cluster IP), the way a Kubernetes reflector does: a full list (written at once), then a watch
/// from the list's resourceVersion, so no change between the two is missed; an ended watch goes on
/// from the last version seen, an expired one (410) lists again.
fn dns_sync(kubectl: &str) -> Result<()> {
    let dir =
        PathBuf::from(std::env::var("STOREFRONT_CLUSTER_DIR").context("STOREFRONT_CLUSTER_DIR")?);
    let cluster = Cluster { dir };
    let file = cluster.path("var/dns/services");
    // Written beside, outside the directory dnsmasq watches, then moved in.
    let partial = cluster.path("var/dns-partial/services");
    let write = |services: &BTreeMap<String, String>| -> Result<()> {
        let hosts: String = services
            .iter()
            .map(|(name, ip)| format!("{ip} {name}\n"))
            .collect();
        std::fs::write(&partial, hosts)?;
        std::fs::rename(&partial, &file)?;
        Ok(())
    };
    let entry = |object: &serde_json::Value| {
        let name = format!(
            "{}.{}.svc.cluster.local",
            object["metadata"]["name"].as_str().unwrap_or_default(),
            object["metadata"]["namespace"].as_str().unwrap_or_default()
        );
        let ip = object["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .map(str::to_owned);
        (name, ip)
    };
    let raw = |path: &str| {
        let mut command = cluster.kubectl(Path::new(kubectl));
        command.args(["get", "--raw", path]);
        command
    };
    loop {
        let listed = raw("/api/v1/services").output()?;
        let list: serde_json::Value = match serde_json::from_slice(&listed.stdout) {
            Ok(list) if listed.status.success() => list,
            _ => {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mut services: BTreeMap<String, String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|object| {
                let (name, ip) = entry(object);
                ip.map(|ip| (name, ip))
            })
            .collect();
        write(&services)?;
        let mut version = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Watch until the server says the version is gone (or the watch cannot start).
        'watch: loop {
            let mut child = raw(&format!(
                "/api/v1/services?watch=1&allowWatchBookmarks=true&timeoutSeconds=600&resourceVersion={version}"
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
            let stdout = BufReader::new(child.stdout.take().expect("piped"));
            let mut seen = 0;
            for event in
                serde_json::Deserializer::from_reader(stdout).into_iter::<serde_json::Value>()
            {
                let Ok(event) = event else { break };
                seen += 1;
                let object = &event["object"];
                match event["type"].as_str() {
                    Some("ADDED" | "MODIFIED" | "DELETED") => {
                        let (name, ip) = entry(object);
                        match ip {
                            Some(ip) if event["type"] != "DELETED" => services.insert(name, ip),
                            _ => services.remove(&name),
                        };
                        write(&services)?;
                    }
                    Some("BOOKMARK") => {}
                    // An ERROR event: most often 410, the version is too old; list again.
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break 'watch;
                    }
                }
                if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                    version = v.to_owned();
                }
            }
            let ended_well = child.wait().is_ok_and(|s| s.success());
            if !ended_well && seen == 0 {
                std::thread::sleep(Duration::from_secs(1));
                break 'watch;
            }
        }
    }
}
