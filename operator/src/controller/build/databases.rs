//! A MongoDB the operator runs for a service (when the Storefront asks for one): its admin
//! Secret, Service, StatefulSet and NetworkPolicy.

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec},
        core::v1::{
            Container, ContainerPort, EmptyDirVolumeSource, PersistentVolumeClaim,
            PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
            Secret, Service as KubeService, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
        networking::v1::{
            NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::{
    DATABASE_ADMIN, MONGODB_PORT, labels, locked_down, metadata,
    network::{pods_of, port},
    plain_env, pod_security, secret_env,
    secrets::opaque_secret,
    selector, service_port,
};
use crate::shop::{Databases, Shop};

/// `{shop}-{service}-db`: a managed database's StatefulSet, headless Service and policy.
pub fn database_object_name(shop: &Shop, service: &str) -> String {
    shop.object_name(&format!("{service}-db"))
}

/// The Secret with a managed database's administrator password (key `password`), generated once.
pub fn database_admin_secret_name(shop: &Shop, service: &str) -> String {
    shop.object_name(&format!("{service}-db-admin"))
}

pub fn database_admin_secret(shop: &Shop, service: &str, password: &str) -> Secret {
    opaque_secret(
        metadata(
            shop,
            database_admin_secret_name(shop, service),
            &format!("{service}-db"),
        ),
        &[("username", DATABASE_ADMIN), ("password", password)],
    )
}

/// The administrator's connection string to a managed database (its pod's stable name).
pub fn database_admin_uri(shop: &Shop, service: &str, password: &str) -> String {
    let name = database_object_name(shop, service);
    format!(
        "mongodb://{DATABASE_ADMIN}:{password}@{name}-0.{name}.{}.svc:{MONGODB_PORT}/?directConnection=true&authSource=admin",
        shop.namespace
    )
}

/// The headless Service that gives a managed database's pod its stable name.
pub fn database_service(shop: &Shop, service: &str) -> KubeService {
    let component = format!("{service}-db");
    KubeService {
        metadata: metadata(shop, database_object_name(shop, service), &component),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector(shop, &component)),
            ports: Some(vec![service_port("mongodb", MONGODB_PORT)]),
            ..ServiceSpec::default()
        }),
        ..KubeService::default()
    }
}

/// A managed database: one MongoDB pod with its own volume, initialised with the administrator
/// from `{shop}-{service}-db-admin` (the operator then makes the service's user with it). The pod
/// is locked down like the services' (non-root as the image's `mongodb` user, read-only root).
pub fn database_stateful_set(shop: &Shop, service: &str) -> Option<StatefulSet> {
    let Databases::Managed {
        storage,
        storage_class,
        image,
    } = &shop.databases
    else {
        return None;
    };
    let component = format!("{service}-db");
    let admin = database_admin_secret_name(shop, service);
    let quantity = |q: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.into());
    let tcp_probe = |period: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("mongodb".into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(6),
        ..Probe::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    };
    let scratch = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let container = Container {
        name: "mongodb".into(),
        image: Some(image.clone()),
        // A service killed inside a transaction leaves it open, its writes holding the documents
        // they touched, until the server's transaction lifetime passes (60 s by default); every
        // Storefront transaction lasts milliseconds, so 10 s bounds that stall (docs/saga.md,
        // "Faults").
        args: Some(vec![
            "--bind_ip_all".into(),
            "--setParameter".into(),
            "transactionLifetimeLimitSeconds=10".into(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("mongodb".into()),
            container_port: MONGODB_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(vec![
            plain_env("MONGO_INITDB_ROOT_USERNAME", DATABASE_ADMIN.into()),
            secret_env("MONGO_INITDB_ROOT_PASSWORD", &admin, "password"),
        ]),
        liveness_probe: Some(tcp_probe(10)),
        readiness_probe: Some(tcp_probe(5)),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_owned(), quantity("100m")),
                    ("memory".to_owned(), quantity("256Mi")),
                ]
                .into(),
            ),
            limits: Some([("memory".to_owned(), quantity("1Gi"))].into()),
            ..ResourceRequirements::default()
        }),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![
            mount("data", "/data/db"),
            mount("config", "/data/configdb"),
            mount("tmp", "/tmp"),
        ]),
        ..Container::default()
    };
    Some(StatefulSet {
        metadata: metadata(shop, database_object_name(shop, service), &component),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(database_object_name(shop, service)),
            selector: LabelSelector {
                match_labels: Some(selector(shop, &component)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(shop, &component)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![scratch("config"), scratch("tmp")]),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    // The official image's `mongodb` user.
                    security_context: Some(pod_security(999)),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some([("storage".to_owned(), storage.clone())].into()),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

/// A managed database takes connections only from its service's pods and from the operator
/// (which makes the service's user); it opens none.
pub fn database_network_policy(shop: &Shop, service: &str) -> NetworkPolicy {
    let component = format!("{service}-db");
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(
                [(
                    "app.kubernetes.io/name".to_owned(),
                    "storefront-operator".to_owned(),
                )]
                .into(),
            ),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: metadata(shop, database_object_name(shop, service), &component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(shop, &component)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![pods_of(shop, service), operator]),
                ports: Some(vec![port(MONGODB_PORT, "TCP")]),
            }]),
            egress: Some(Vec::new()),
        }),
    }
}
