//! Preparing the machine: the free space and privileges it needs, the sysctls and the pod
//! bridge.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use super::{BRIDGE, Cluster, GATEWAY, GUARD};
use crate::install::run;

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
pub(super) const MACHINE_PATHS: [&str; 5] = [
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/run/containerd",
    "/usr/libexec/kubernetes",
];

/// Free space the cluster's filesystem needs: the images (about 0.7 GiB imported), the pods' data,
/// and the kubelet's eviction threshold (1 GiB, `xtask/assets/cluster/kubelet.yaml`), under which
/// it deletes every image no pod runs yet, the ones just imported included.
const MIN_FREE_BYTES: u64 = 3 << 30;

/// What this cluster needs of the machine, checked before anything is changed: root (it makes a
/// bridge, iptables rules and mounts), cgroup v1 (what Kubernetes 1.20's kubelet runs on here) and
/// room on the disk.
pub(super) fn preflight(cluster: &Cluster) -> Result<()> {
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

/// Readable by root only (a file, or a directory and everything in it).
pub(super) fn private(path: &Path) -> Result<()> {
    run(
        Command::new("chmod").args(["-R", "go-rwx"]).arg(path),
        "make credentials private",
    )
}

pub(super) fn bridge_exists() -> bool {
    Path::new("/sys/class/net").join(BRIDGE).exists()
}

fn sysctl_read(name: &str) -> Result<String> {
    let output = Command::new("sysctl").args(["-n", name]).output()?;
    if !output.status.success() {
        bail!("sysctl {name}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub(super) fn sysctl_write(name: &str, value: &str) -> Result<()> {
    run(
        Command::new("sysctl").args(["-qw", &format!("{name}={value}")]),
        "set a sysctl",
    )
}

/// The host side: bridge netfilter, forwarding (the old values saved for `down`), the guard rule,
/// and the pod bridge with its address (before the API server binds to it).
pub(super) fn prepare_host(cluster: &Cluster) -> Result<()> {
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
