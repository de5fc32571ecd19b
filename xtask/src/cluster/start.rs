//! Starting the components in order — etcd, containerd, the API server, the controllers, the
//! kubelet, kube-proxy — and the pause image the pods need.

use std::{process::Command, time::Duration};

use anyhow::{Context, Result, bail};

use super::{
    API_SERVER_PORT, Cluster, ETCD_PEER_PORT, ETCD_PORT, GATEWAY, NODE, PAUSE_IMAGE, SERVICE_CIDR,
    succeeds, wait,
};
use crate::{
    images,
    install::{ClusterTools, run},
    procs, step,
};

pub(super) fn start(cluster: &Cluster, tools: &ClusterTools) -> Result<()> {
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
