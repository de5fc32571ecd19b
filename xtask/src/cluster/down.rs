//! `cluster down`: every process stopped, mounts, iptables rules and cgroups removed, the
//! sysctls restored.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{
    BRIDGE, Cluster, GUARD, PROCESSES, RUN,
    host::{MACHINE_PATHS, bridge_exists, sysctl_write},
};
use crate::{
    install::run,
    procs::{self, Proc},
    step,
};

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
