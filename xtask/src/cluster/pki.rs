//! The cluster's certificates, service-account tokens and the components' configuration.

use std::{collections::BTreeMap, process::Command};

use anyhow::{Context, Result, bail};

use super::{
    API_SERVER_PORT, BRIDGE, Cluster, DNS_IP, GATEWAY, KUBERNETES_SERVICE_IP, NODE, PAUSE_IMAGE,
    POD_CIDR, RUN, host::private,
};
use crate::{
    pki::{self, Pki},
    root, step,
};

/// The component identities: a token each (static token file), made once with the certificates.
pub(super) struct Tokens(BTreeMap<&'static str, String>);

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
pub(super) fn credentials(cluster: &Cluster) -> Result<Tokens> {
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
pub(super) fn write_configuration(cluster: &Cluster, tokens: &Tokens) -> Result<()> {
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
