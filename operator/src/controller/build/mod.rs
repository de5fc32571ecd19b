//! Pure functions from a validated [`Shop`] to the Kubernetes objects that run it. No I/O: the
//! reconciler applies what these return (server-side apply), and the golden tests pin them.
//!
//! Every object is named `{shop}-{part}`, labelled with the shop and component, and owned by the
//! Storefront (so deleting it collects them).
//!
//! By kind: `config.rs`, `secrets.rs`, `workloads.rs` (Deployments, Services, disruption
//! budgets), `ingress.rs`, `network.rs` (NetworkPolicies), `databases.rs` (a MongoDB the operator
//! runs); this file holds the shared pieces and [`objects`], everything a shop needs at once.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{
            Capabilities, ConfigMap, EnvVar, EnvVarSource, HTTPGetAction, PodSecurityContext,
            Probe, SeccompProfile, SecretKeySelector, SecurityContext, Service as KubeService,
            ServicePort,
        },
        networking::v1::{Ingress, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};

use crate::shop::{Databases, Planned, Shop};

mod config;
mod databases;
mod ingress;
mod network;
mod secrets;
mod workloads;

pub use config::config_map;
pub use databases::{
    database_admin_secret, database_admin_secret_name, database_admin_uri, database_network_policy,
    database_object_name, database_service, database_stateful_set,
};
pub use ingress::{MAX_BODY, MAX_UPLOAD_BODY, UPLOAD_ROUTES, ingresses};
pub use network::network_policy;
pub use secrets::{admin_secret, database_secret, database_secret_name, signing_key_secret};
pub use workloads::{deployment, disruption_budget, service};

pub const MANAGER: &str = "storefront-operator";
/// The Secret the operator generates once with auth's signing key (`signing-key.pem`).
pub const SIGNING_KEY_SECRET: &str = "jwt";
/// The Secret with the shop's first administrator (`email`, `password`): generated once, or made
/// beforehand by the platform engineer with their own; auth creates the account at start.
pub const ADMIN_SECRET: &str = "admin";
/// How long a stopping pod keeps serving while it leaves its Services (`SHUTDOWN_DRAIN_SECS`).
pub const SHUTDOWN_DRAIN_SECS: i64 = 5;
pub const MONGODB_PORT: i32 = 27017;
/// The user the managed databases are initialised with (`MONGO_INITDB_ROOT_USERNAME`).
pub const DATABASE_ADMIN: &str = "root";
/// The labels that select one component of one shop.
pub fn selector(shop: &Shop, component: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "storefront"),
        ("app.kubernetes.io/instance", shop.name.as_str()),
        ("app.kubernetes.io/component", component),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn labels(shop: &Shop, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector(shop, component);
    labels.insert("app.kubernetes.io/part-of".into(), "storefront".into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels
}

fn metadata(shop: &Shop, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(shop.namespace.clone()),
        labels: Some(labels(shop, component)),
        owner_references: Some(vec![shop.owner.clone()]),
        ..ObjectMeta::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Every container: no privilege escalation, a read-only root, non-root, no capabilities.
fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// Every pod: as `user` (never root), the runtime's default seccomp profile.
fn pod_security(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// A TCP Service port named like the container port it targets.
fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn plain_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// Everything the shop's services need in the cluster, in apply order.
pub struct Objects {
    pub config_map: ConfigMap,
    /// `mongodb.mode: managed`: a headless Service and a StatefulSet per service database.
    pub database_services: Vec<KubeService>,
    pub databases: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<KubeService>,
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    pub network_policies: Vec<NetworkPolicy>,
    pub ingresses: Vec<Ingress>,
}

impl Objects {
    /// Every object, in apply order, as the API server receives it (for the golden tests and
    /// the schema check).
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        fn json<T: serde::Serialize>(object: &T) -> serde_json::Value {
            serde_json::to_value(object).expect("Kubernetes objects serialize")
        }
        let mut all = vec![json(&self.config_map)];
        all.extend(self.database_services.iter().map(json));
        all.extend(self.databases.iter().map(json));
        all.extend(self.deployments.iter().map(json));
        all.extend(self.services.iter().map(json));
        all.extend(self.disruption_budgets.iter().map(json));
        all.extend(self.network_policies.iter().map(json));
        all.extend(self.ingresses.iter().map(json));
        all
    }
}

pub fn objects(shop: &Shop) -> Objects {
    let managed: Vec<&Planned> = match shop.databases {
        Databases::Managed { .. } => shop.database_services().collect(),
        Databases::External { .. } => Vec::new(),
    };
    Objects {
        config_map: config_map(shop),
        database_services: managed
            .iter()
            .map(|p| database_service(shop, p.service.name))
            .collect(),
        databases: managed
            .iter()
            .filter_map(|p| database_stateful_set(shop, p.service.name))
            .collect(),
        deployments: shop.services.iter().map(|p| deployment(shop, p)).collect(),
        services: shop.services.iter().map(|p| service(shop, p)).collect(),
        disruption_budgets: shop
            .services
            .iter()
            .filter_map(|p| disruption_budget(shop, p))
            .collect(),
        network_policies: shop
            .services
            .iter()
            .map(|p| network_policy(shop, p))
            .chain(
                managed
                    .iter()
                    .map(|p| database_network_policy(shop, p.service.name)),
            )
            .collect(),
        ingresses: ingresses(shop),
    }
}
