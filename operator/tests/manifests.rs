//! The chart and the plain manifests, checked without a cluster: `helm lint`, `helm template`
//! through `kubernetes-validate --strict` (Kubernetes 1.37 schemas), the same for `manifests/` and
//! for every object the builders make, and the example Storefront through the operator's own
//! validation. `cargo xtask test` installs helm and the validator (BACKENDS.md).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::json;
use storefront_operator::{controller::build::objects, crd::Storefront, shop::Shop};
use support::repository as root;

mod support;

fn tool(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the manifest checks through `cargo xtask test`")
    }))
}

#[track_caller]
fn succeeds(command: &mut Command) -> String {
    let output = command.output().expect("run the tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

fn validate(file: &Path) {
    let report = succeeds(
        Command::new(tool("STOREFRONT_TEST_KUBERNETES_VALIDATE"))
            .args(["--strict", "--quiet"])
            .arg(file),
    );
    assert!(!report.contains("ERROR"), "{}:\n{report}", file.display());
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("storefront-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn the_chart_lints_and_renders_valid_objects() {
    let chart = root().join("charts/storefront-operator");
    succeeds(
        Command::new(tool("STOREFRONT_TEST_HELM"))
            .arg("lint")
            .arg(&chart),
    );
    let rendered = succeeds(
        Command::new(tool("STOREFRONT_TEST_HELM"))
            .args([
                "template",
                "sf",
                "--namespace",
                "storefront-system",
                "--include-crds",
            ])
            .arg(&chart),
    );
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
    ] {
        assert!(rendered.contains(&format!("kind: {kind}")), "no {kind}");
    }
    let file = scratch("chart.yaml");
    std::fs::write(&file, rendered).unwrap();
    validate(&file);
}

#[test]
fn the_plain_manifests_are_valid() {
    for file in [
        "install.yaml",
        "dev-backends.yaml",
        "example-storefront.yaml",
    ] {
        validate(&root().join("manifests").join(file));
    }
    validate(&root().join("crds/storefront.yaml"));
}

#[test]
fn the_example_storefront_passes_the_operators_validation() {
    let text = std::fs::read_to_string(root().join("manifests/example-storefront.yaml")).unwrap();
    let storefront = text
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).ok())
        .find(|doc| doc["kind"] == "Storefront")
        .expect("the example has a Storefront");
    let mut storefront: Storefront = serde_json::from_value(storefront).unwrap();
    storefront.metadata.uid = Some("example".into());
    let shop = Shop::validate(&storefront).unwrap();
    assert_eq!(
        shop.image_of("web"),
        "ghcr.io/storefront/storefront-web:dev"
    );
}

#[test]
fn every_object_the_builders_make_is_valid_kubernetes() {
    let spec = json!({
        "host": "shop.example.com",
        "tlsSecret": "shop-tls",
        "size": "medium",
        "kafka": { "bootstrapServers": "kafka:9092" },
        "mongodb": { "mode": "managed" },
        "objectStorage": { "endpoint": "http://minio:9000", "bucket": "shop-images", "credentialsSecret": "minio" },
        "redis": { "url": "redis://redis:6379" },
        "payments": { "stripeSecret": "stripe" },
    });
    let mut storefront = Storefront::new("shop", serde_json::from_value(spec).unwrap());
    storefront.metadata.namespace = Some("prod".into());
    storefront.metadata.uid = Some("uid".into());
    let objects = objects(&Shop::validate(&storefront).unwrap());
    let yaml: Vec<String> = objects
        .to_json()
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect();
    let yaml = yaml.join("---\n");
    let file = scratch("objects.yaml");
    std::fs::write(&file, yaml).unwrap();
    validate(&file);
}
