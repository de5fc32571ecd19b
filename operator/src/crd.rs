//! The `Storefront` resource (`storefront.dev/v1alpha1`): what a platform engineer writes, and the
//! status the operator reports. The CRD in `crds/` is generated from these types (`crdgen`), so
//! the schema the API server enforces — required fields, ranges, enums — is the one written here.
//! What a schema cannot say (a secret that must exist, a host that must be a DNS name) is checked by
//! [`crate::controller::validate`] and reported in the `Ready` condition.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::ResourceRequirements, apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A whole shop: its services, where its backends are, and how it is reached.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "storefront.dev",
    version = "v1alpha1",
    kind = "Storefront",
    namespaced,
    shortname = "sf",
    status = "StorefrontStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.readyServices"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StorefrontSpec {
    /// Where the service images come from.
    #[serde(default)]
    pub image: ImageSpec,
    /// The shop's host name; the Ingress routes it.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// A `kubernetes.io/tls` Secret for `host`; plain HTTP without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// Where the ingress controller runs: the NetworkPolicies let only it (and the shop's own
    /// services, per the service graph) reach the services.
    #[serde(default = "default_ingress_namespace")]
    #[schemars(length(min = 1, max = 63))]
    pub ingress_controller_namespace: String,
    /// Replicas and resources for every service unless a service says otherwise.
    #[serde(default)]
    pub size: Size,
    /// Per-service overrides of `size`.
    #[serde(default)]
    pub services: ServiceOverrides,
    pub kafka: KafkaSpec,
    pub mongodb: MongoSpec,
    pub object_storage: ObjectStorageSpec,
    pub redis: RedisSpec,
    pub payments: PaymentsSpec,
    /// The function that prices each order (shipping, fee and tax lines); unset: the built-in
    /// one orders serves itself (docs/api/pricing.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingSpec>,
    /// Traces: every service exports its spans by OTLP to a collector (docs/traces.md); unset:
    /// no traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySpec>,
    /// What happens to topics, databases and the bucket when the Storefront is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Stops every write but status (for maintenance by hand).
    #[serde(default)]
    pub paused: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Registry and path prefix: images are `{registry}/storefront-{service}:{tag}`.
    #[serde(default = "default_registry")]
    #[schemars(length(min = 1))]
    pub registry: String,
    #[serde(default = "default_tag")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: String,
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

fn default_ingress_namespace() -> String {
    "ingress-nginx".into()
}

fn default_registry() -> String {
    "ghcr.io/storefront".into()
}

fn default_tag() -> String {
    "latest".into()
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            registry: default_registry(),
            tag: default_tag(),
            pull_policy: PullPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A preset of replicas and resources: `small` for a laptop cluster, `large` for real traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Size {
    #[default]
    Small,
    Medium,
    Large,
}

/// One override per service; absent ones follow `size`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart: Option<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payments: Option<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<ServiceSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// `host:port[,host:port…]` of the brokers.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// Partitions of each topic; grown when raised, never shrunk.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1000))]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    #[schemars(range(min = 1, max = 7))]
    pub replication_factor: i16,
    /// How long the broker may hold a consumer's fetch that found nothing
    /// (`KAFKA_FETCH_WAIT_MAX_MS`). Unset: the client's default long poll, right for Kafka, which
    /// answers a held fetch as soon as a message arrives. A broker that holds every fetch for the
    /// whole wait (tansu, the development broker) wants a short one, e.g. 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60000))]
    pub fetch_wait_max_ms: Option<u32>,
    /// With a short `fetchWaitMaxMs`: how often a consumer that saw nothing for 2 s looks again
    /// (`KAFKA_IDLE_FETCH_INTERVAL_MS`), so an idle shop does not fetch all the time. Unset: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub idle_fetch_interval_ms: Option<u32>,
}

fn default_partitions() -> i32 {
    3
}

fn default_replication() -> i16 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoSpec {
    pub mode: MongoMode,
    /// `managed`: the size of each service database's volume.
    #[serde(default = "default_storage")]
    pub storage: String,
    /// `managed`: the StorageClass of those volumes (the cluster's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `managed`: the MongoDB image of the database StatefulSets.
    #[serde(default = "default_mongo_image")]
    pub image: String,
    /// `external`: a Secret key holding an admin connection string; the operator creates one
    /// database and one user per service with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_secret: Option<SecretKeyRef>,
}

fn default_storage() -> String {
    "1Gi".into()
}

fn default_mongo_image() -> String {
    "mongo:8.0".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MongoMode {
    /// A StatefulSet with a volume per service database, run by the operator.
    Managed,
    /// A MongoDB the platform already runs.
    External,
}

/// A key of a Secret in the Storefront's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorageSpec {
    /// The S3 API the services use (MinIO in the cluster, or any S3).
    #[schemars(length(min = 1))]
    pub endpoint: String,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// A Secret with `accessKey` and `secretKey`.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// `redis://host:port`.
    #[schemars(length(min = 1))]
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentsSpec {
    /// A Secret with `secretKey` (`sk_…`), `publishableKey` (`pk_…`) and `webhookSecret`
    /// (`whsec_…`).
    #[schemars(length(min = 1, max = 253))]
    pub stripe_secret: String,
    /// Where Stripe's API is (real Stripe unless a stand-in is named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
}

/// A pricing function of the shop's own: orders sends it each order and records its answer,
/// falling back to the built-in prices when it fails or does not answer in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PricingSpec {
    /// Its http(s) URL (`PRICING_URL`).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// How long orders waits for its answer (`PRICING_TIMEOUT_MS`, default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 50, max = 10000))]
    pub timeout_ms: Option<u32>,
}

/// Where the shop's traces go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySpec {
    /// An OpenTelemetry collector's OTLP/HTTP endpoint, e.g. `http://otel-collector.observability:4318`
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`; spans go to `{otlpEndpoint}/v1/traces`).
    #[schemars(length(min = 1, max = 2048))]
    pub otlp_endpoint: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Topics, databases and the bucket outlive the Storefront.
    #[default]
    Retain,
    /// Deleting the Storefront deletes them too.
    Delete,
}

/// What the operator saw at its last reconcile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorefrontStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `ready/total` services, for `kubectl get sf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_services: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceStatus>,
    // Their types are `ConditionType`s.
    /// `Ready`, `ServicesAvailable`, `KafkaReady`, `DatabasesReady`, `StorageReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The condition types a Storefront's status has, one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The whole shop: every other condition true.
    Ready,
    /// Every service has its replicas ready.
    ServicesAvailable,
    /// The shop's topics exist with their partitions.
    KafkaReady,
    /// Each service's database and user exist.
    DatabasesReady,
    /// The image bucket exists.
    StorageReady,
}

impl ConditionType {
    pub const ALL: [ConditionType; 5] = [
        ConditionType::Ready,
        ConditionType::ServicesAvailable,
        ConditionType::KafkaReady,
        ConditionType::DatabasesReady,
        ConditionType::StorageReady,
    ];

    /// The `type` as the status shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::ServicesAvailable => "ServicesAvailable",
            ConditionType::KafkaReady => "KafkaReady",
            ConditionType::DatabasesReady => "DatabasesReady",
            ConditionType::StorageReady => "StorageReady",
        }
    }

    pub fn parse(raw: &str) -> Option<ConditionType> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    /// The backend a condition is about, named as its Warning Event's action (`Kafka`,
    /// `Databases`, `Storage`); `None` for the shop's own conditions.
    pub fn backend(self) -> Option<&'static str> {
        match self {
            ConditionType::KafkaReady => Some("Kafka"),
            ConditionType::DatabasesReady => Some("Databases"),
            ConditionType::StorageReady => Some("Storage"),
            ConditionType::Ready | ConditionType::ServicesAvailable => None,
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Pending,
    Progressing,
    Ready,
    Degraded,
    Paused,
    Deleting,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub desired_replicas: i32,
    pub ready_replicas: i32,
}

#[cfg(test)]
mod tests {
    use super::ConditionType;

    #[test]
    fn a_condition_type_reads_as_it_is_written_and_names_its_backend() {
        for kind in ConditionType::ALL {
            assert_eq!(ConditionType::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(ConditionType::parse("Healthy"), None);
        let backends: Vec<_> = ConditionType::ALL
            .into_iter()
            .filter_map(ConditionType::backend)
            .collect();
        assert_eq!(backends, ["Kafka", "Databases", "Storage"]);
    }
}
