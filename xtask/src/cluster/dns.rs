//! Cluster DNS: dnsmasq fed with the Services and pods the API server lists.

use std::{
    collections::BTreeMap,
    io::BufReader,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result};

use super::Cluster;

/// Keeps dnsmasq's hosts file equal to the cluster's Services (`{name}.{namespace}.svc.cluster.local`
/// → cluster IP), the way a Kubernetes reflector does: a full list (written at once), then a watch
/// from the list's resourceVersion, so no change between the two is missed; an ended watch goes on
/// from the last version seen, an expired one (410) lists again.
pub(super) fn dns_sync(kubectl: &str) -> Result<()> {
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
