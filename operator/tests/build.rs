//! The objects of a shop, pinned by golden files (`tests/snapshots/`), and the validation that
//! stands between the resource and the builders.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use storefront_operator::{
    controller::build::{admin_secret, objects},
    controller::validate::Invalid,
    crd::{Storefront, StorefrontSpec},
    shop::Shop,
};

/// A Storefront as read from the API server (namespace and uid set) from its spec in YAML.
fn storefront(spec: Value) -> Storefront {
    let spec: StorefrontSpec = serde_json::from_value(spec).unwrap();
    let mut storefront = Storefront::new("shop", spec);
    storefront.metadata = ObjectMeta {
        name: Some("shop".into()),
        namespace: Some("prod".into()),
        uid: Some("6f1c9a5e-8d59-4a51-9d2e-3b8f0c1d2e3f".into()),
        ..ObjectMeta::default()
    };
    storefront
}

fn small() -> Value {
    json!({
        "host": "shop.example.com",
        "kafka": { "bootstrapServers": "kafka.data:9092" },
        "mongodb": { "mode": "managed" },
        "objectStorage": {
            "endpoint": "http://minio.data:9000",
            "bucket": "shop-images",
            "credentialsSecret": "minio-credentials",
        },
        "redis": { "url": "redis://redis.data:6379" },
        "payments": { "stripeSecret": "stripe" },
    })
}

fn full() -> Value {
    let mut spec = small();
    let more = json!({
        "image": { "registry": "registry.example.com/shop/", "tag": "1.4.2", "pullPolicy": "Always" },
        "tlsSecret": "shop-tls",
        "ingressControllerNamespace": "ingress",
        "size": "large",
        "services": {
            "web": { "replicas": 5 },
            "payments": {
                "replicas": 1,
                "resources": { "requests": { "cpu": "300m", "memory": "200Mi" } },
            },
        },
        "kafka": {
            "bootstrapServers": "k1:9092,k2:9092", "partitions": 12, "replicationFactor": 3,
            "fetchWaitMaxMs": 10, "idleFetchIntervalMs": 250,
        },
        "pricing": { "url": "https://prices.example.com:8443/quote", "timeoutMs": 500 },
        "telemetry": { "otlpEndpoint": "http://otel-collector.observability:4318" },
        "mongodb": { "mode": "external", "uriSecret": { "name": "mongo-admin", "key": "uri" } },
        "objectStorage": {
            "endpoint": "http://minio.data:9000",
            "bucket": "shop-images",
            "credentialsSecret": "minio-credentials",
        },
        "payments": { "stripeSecret": "stripe", "apiBase": "http://stripe-mock.test:8420" },
        "deletionPolicy": "Delete",
    });
    for (k, v) in more.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

/// Every object of the shop, in apply order, as the API server would receive it.
fn all(spec: Value) -> Vec<Value> {
    let shop = Shop::validate(&storefront(spec)).unwrap();
    let objects = objects(&shop);
    objects.to_json()
}

#[test]
fn a_small_shop() {
    insta::assert_yaml_snapshot!(all(small()));
}

#[test]
fn a_full_shop() {
    insta::assert_yaml_snapshot!(all(full()));
}

#[test]
fn every_pod_is_locked_down_and_probed() {
    for object in all(full()).iter().filter(|o| o["kind"] == "Deployment") {
        let pod = &object["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let name = object["metadata"]["name"].as_str().unwrap();
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(container["resources"]["requests"].is_object(), "{name}");
        assert_eq!(
            object["metadata"]["ownerReferences"][0]["kind"], "Storefront",
            "{name}"
        );
        assert_eq!(object["metadata"]["ownerReferences"][0]["controller"], true);
    }
}

#[test]
fn sizes_and_overrides_decide_replicas_and_budgets() {
    let shop = Shop::validate(&storefront(full())).unwrap();
    let replicas: Vec<(&str, i32)> = shop
        .services
        .iter()
        .map(|p| (p.service.name, p.replicas))
        .collect();
    assert_eq!(
        replicas,
        [
            ("auth", 3),
            ("products", 3),
            ("cart", 3),
            ("orders", 3),
            ("payments", 1),
            ("notifications", 3),
            ("web", 5)
        ]
    );
    let payments = &shop.services[4];
    assert_eq!(
        payments.resources,
        serde_json::from_value::<ResourceRequirements>(
            json!({ "requests": { "cpu": "300m", "memory": "200Mi" } })
        )
        .unwrap()
    );
    // A budget for each replicated service only: one replica with a budget blocks drains.
    let budgets = objects(&shop).disruption_budgets;
    let names: Vec<&str> = budgets
        .iter()
        .map(|b| b.metadata.name.as_deref().unwrap())
        .collect();
    assert!(!names.contains(&"shop-payments"), "{names:?}");
    assert_eq!(names.len(), 6);
    let small = Shop::validate(&storefront(small())).unwrap();
    assert!(objects(&small).disruption_budgets.is_empty());
}

#[test]
fn what_the_schema_cannot_check_is_refused_with_the_field() {
    let cases: [(&str, Value, &str); 13] = [
        (
            "host",
            json!("Shop Example"),
            "spec.host: \"Shop Example\" is not a DNS name",
        ),
        ("host", json!("shop..example.com"), "spec.host"),
        ("tlsSecret", json!("Shop_TLS"), "spec.tlsSecret"),
        (
            "kafka",
            json!({ "bootstrapServers": "kafka" }),
            "spec.kafka.bootstrapServers: \"kafka\" is not host:port",
        ),
        (
            "redis",
            json!({ "url": "http://redis:6379" }),
            "spec.redis.url",
        ),
        (
            "mongodb",
            json!({ "mode": "managed", "storage": "lots" }),
            "spec.mongodb.storage: \"lots\" is not a quantity",
        ),
        (
            "mongodb",
            json!({ "mode": "external" }),
            "spec.mongodb.uriSecret",
        ),
        (
            "objectStorage",
            json!({ "endpoint": "minio:9000", "bucket": "b-1", "credentialsSecret": "s" }),
            "spec.objectStorage.endpoint",
        ),
        (
            "objectStorage",
            json!({ "endpoint": "http://minio:9000", "bucket": "Images", "credentialsSecret": "s" }),
            "spec.objectStorage.bucket",
        ),
        (
            "pricing",
            json!({ "url": "ftp://prices.example.com/quote" }),
            "spec.pricing.url: must be an http:// or https:// URL",
        ),
        ("pricing", json!({ "url": "not a url" }), "spec.pricing.url"),
        (
            "telemetry",
            json!({ "otlpEndpoint": "otel-collector:4318" }),
            "spec.telemetry.otlpEndpoint",
        ),
        (
            "telemetry",
            json!({ "otlpEndpoint": "grpc://otel-collector:4317" }),
            "spec.telemetry.otlpEndpoint: must be an http:// or https:// URL",
        ),
    ];
    for (key, value, message) in cases {
        let mut spec = small();
        spec[key] = value.clone();
        let error = Shop::validate(&storefront(spec)).unwrap_err().to_string();
        assert!(error.starts_with(message), "{key} = {value}: {error}");
    }
    // Not read from the API server: no namespace or uid to own objects with.
    let spec: StorefrontSpec = serde_json::from_value(small()).unwrap();
    let bare = Storefront::new("shop", spec);
    assert_eq!(
        Shop::validate(&bare).unwrap_err(),
        Invalid::Metadata("namespace")
    );
}

/// The first administrator's address is one auth accepts (its domain has a dot), or auth would
/// stop at start and the shop would never be ready.
#[test]
fn the_first_administrator_has_an_address_auth_accepts() {
    for (host, email) in [
        ("shop.example.com", "admin@shop.example.com"),
        ("localhost", "admin@localhost.local"),
    ] {
        let mut spec = small();
        spec["host"] = json!(host);
        let shop = Shop::validate(&storefront(spec)).unwrap();
        let secret = admin_secret(&shop, "password");
        let data = secret.data.unwrap();
        assert_eq!(String::from_utf8(data["email"].0.clone()).unwrap(), email);
    }
}
