//! The shop's ConfigMap: the settings every service reads from its environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{SHUTDOWN_DRAIN_SECS, metadata};
use crate::shop::{HTTP_PORT, SERVICES, Shop};

/// The configuration every service shares (the kit's variables, docs/architecture.md §9's
/// contract).
pub fn config_map(shop: &Shop) -> ConfigMap {
    let storage = &shop.object_storage;
    let mut data: BTreeMap<String, String> = [
        ("TOPIC_PREFIX", shop.topic_prefix()),
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            shop.kafka.bootstrap_servers.clone(),
        ),
        ("KAFKA_PARTITIONS", shop.kafka.partitions.to_string()),
        // Topics are the operator's to create (KafkaReady); services only use them.
        ("KAFKA_ENSURE_TOPICS", "false".to_owned()),
        ("REDIS_URL", shop.redis_url.clone()),
        ("S3_ENDPOINT", storage.endpoint.clone()),
        ("S3_BUCKET", storage.bucket.clone()),
        ("S3_ENSURE_BUCKET", "false".to_owned()),
        (
            "JWKS_URL",
            format!("{}/api/users/.well-known/jwks.json", shop.url_of("auth")),
        ),
        ("PUBLIC_URL", shop.public_url()),
        ("COOKIE_SECURE", shop.tls_secret.is_some().to_string()),
        ("TRUST_PROXY_HEADERS", "true".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("BIND_ADDR", format!("0.0.0.0:{HTTP_PORT}")),
        ("SHUTDOWN_DRAIN_SECS", SHUTDOWN_DRAIN_SECS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for service in &SERVICES {
        if service.name != "web" {
            data.insert(
                format!("{}_URL", service.name.to_ascii_uppercase()),
                shop.url_of(service.name),
            );
        }
    }
    for (variable, value) in [
        ("KAFKA_FETCH_WAIT_MAX_MS", shop.kafka.fetch_wait_max_ms),
        (
            "KAFKA_IDLE_FETCH_INTERVAL_MS",
            shop.kafka.idle_fetch_interval_ms,
        ),
    ] {
        if let Some(value) = value {
            data.insert(variable.into(), value.to_string());
        }
    }
    if let Some(base) = &shop.payments.api_base {
        data.insert("STRIPE_API_BASE".into(), base.clone());
        data.insert("STRIPE_JS_URL".into(), format!("{base}/js.stripe.com/v3/"));
    }
    ConfigMap {
        metadata: metadata(shop, shop.object_name("config"), "config"),
        data: Some(data),
        ..ConfigMap::default()
    }
}
