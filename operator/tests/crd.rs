//! The committed CRD is the one the types generate, and its schema refuses what it should.

use serde_json::Value;

#[test]
fn the_committed_crd_is_current() {
    // The CRD for kubectl, and the same file in the chart (Helm installs charts' crds/).
    let generated = storefront_operator::crd_yaml();
    for file in [
        "crds/storefront.yaml",
        "charts/storefront-operator/crds/storefront.yaml",
    ] {
        let path = format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("STOREFRONT_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is stale: run `cargo xtask crds` and commit it"
        );
    }
}

fn schema() -> Value {
    let crd = serde_json::to_value(storefront_operator::crd()).unwrap();
    assert_eq!(crd["spec"]["group"], "storefront.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "sf");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(
        version["subresources"]["status"].is_object(),
        "status subresource"
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Phase", "URL", "Ready", "Age"]);
    version["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn the_schema_requires_the_backends_and_bounds_the_numbers() {
    let spec = schema();
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for field in [
        "host",
        "kafka",
        "mongodb",
        "objectStorage",
        "redis",
        "payments",
    ] {
        assert!(
            required.contains(&field),
            "{field} is required: {required:?}"
        );
    }
    let kafka = &spec["properties"]["kafka"]["properties"];
    assert_eq!(kafka["partitions"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(kafka["partitions"]["maximum"].as_f64(), Some(1000.0));
    assert_eq!(kafka["replicationFactor"]["minimum"].as_f64(), Some(1.0));
    let mode = &spec["properties"]["mongodb"]["properties"]["mode"]["enum"];
    assert_eq!(mode, &serde_json::json!(["managed", "external"]));
    let policy = &spec["properties"]["deletionPolicy"]["enum"];
    assert_eq!(policy, &serde_json::json!(["Retain", "Delete"]));
    let size = &spec["properties"]["size"]["enum"];
    assert_eq!(size, &serde_json::json!(["small", "medium", "large"]));
    let replicas = &spec["properties"]["services"]["properties"]["web"]["properties"]["replicas"];
    assert_eq!(replicas["minimum"].as_f64(), Some(0.0));
    assert_eq!(replicas["maximum"].as_f64(), Some(100.0));
    assert_eq!(spec["properties"]["host"]["minLength"], 1);
}
