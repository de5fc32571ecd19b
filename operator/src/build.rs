//! Pure functions from a validated [`Shop`] to the Kubernetes objects that run it. No I/O: the
//! reconciler applies what these return (server-side apply), and the golden tests pin them.
//!
//! Every object is named `{shop}-{part}`, labelled with the shop and component, and owned by the
//! Storefront (so deleting it collects them).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{
            Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
            StatefulSetSpec,
        },
        core::v1::{
            Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort,
            EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction,
            PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
            PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
            SecretKeySelector, SecretVolumeSource, SecurityContext, Service as KubeService,
            ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
            IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule,
            NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
            ServiceBackendPort,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use crate::shop::{Databases, HTTP_PORT, Planned, SERVICES, Shop};

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

/// auth's signing key (`signing-key.pem`, an Ed25519 PKCS#8 PEM as `auth generate-key` writes).
pub fn signing_key_secret(shop: &Shop, pem: &str) -> Secret {
    opaque_secret(
        metadata(shop, shop.object_name(SIGNING_KEY_SECRET), "auth"),
        &[("signing-key.pem", pem)],
    )
}

/// The shop's first administrator: `admin@{host}` (`admin@{host}.local` for a one-label host
/// such as `localhost`: an e-mail domain needs a dot) and a generated password.
pub fn admin_secret(shop: &Shop, password: &str) -> Secret {
    let domain = if shop.host.contains('.') {
        shop.host.clone()
    } else {
        format!("{}.local", shop.host)
    };
    opaque_secret(
        metadata(shop, shop.object_name(ADMIN_SECRET), "auth"),
        &[
            ("email", &format!("admin@{domain}")),
            ("password", password),
        ],
    )
}

fn opaque_secret(metadata: ObjectMeta, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(key, value)| {
                    let bytes = k8s_openapi::ByteString(value.as_bytes().to_vec());
                    ((*key).to_owned(), bytes)
                })
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The Secret with a service's MongoDB connection string (key `uri`), written by the operator
/// when it creates the service's database user.
pub fn database_secret_name(shop: &Shop, service: &str) -> String {
    shop.object_name(&format!("{service}-mongodb"))
}

/// A service's database credentials: `uri` (what the service reads), and the parts of it.
pub fn database_secret(shop: &Shop, service: &str, password: &str, uri: &str) -> Secret {
    opaque_secret(
        metadata(shop, database_secret_name(shop, service), service),
        &[
            ("uri", uri),
            ("database", &shop.database_name(service)),
            ("username", service),
            ("password", password),
        ],
    )
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

/// The Deployment of one service: its image, the shared config, its own secrets, probes on
/// `/healthz` and `/readyz`, and a locked-down pod (non-root, read-only root, no capabilities).
pub fn deployment(shop: &Shop, planned: &Planned) -> Deployment {
    let service = planned.service;
    let name = shop.object_name(service.name);
    let mut env = Vec::new();
    if service.needs.mongodb {
        env.push(secret_env(
            "MONGODB_URI",
            &database_secret_name(shop, service.name),
            "uri",
        ));
        env.push(plain_env(
            "MONGODB_DATABASE",
            shop.database_name(service.name),
        ));
    }
    if service.needs.object_storage {
        let secret = &shop.object_storage.credentials_secret;
        env.push(secret_env("S3_ACCESS_KEY", secret, "accessKey"));
        env.push(secret_env("S3_SECRET_KEY", secret, "secretKey"));
    }
    if service.needs.stripe {
        let secret = &shop.payments.stripe_secret;
        if service.name == "web" {
            env.push(secret_env(
                "STRIPE_PUBLISHABLE_KEY",
                secret,
                "publishableKey",
            ));
        } else {
            env.push(secret_env("STRIPE_SECRET_KEY", secret, "secretKey"));
            env.push(secret_env("STRIPE_WEBHOOK_SECRET", secret, "webhookSecret"));
        }
    }
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    }];
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "16Mi".into(),
            )),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if service.name == "auth" {
        let admin = shop.object_name(ADMIN_SECRET);
        env.push(secret_env("ADMIN_EMAIL", &admin, "email"));
        env.push(secret_env("ADMIN_PASSWORD", &admin, "password"));
        env.push(plain_env(
            "SIGNING_KEY_FILE",
            "/var/run/storefront/jwt/signing-key.pem".into(),
        ));
        mounts.push(VolumeMount {
            name: "jwt".into(),
            mount_path: "/var/run/storefront/jwt".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "jwt".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(shop.object_name(SIGNING_KEY_SECRET)),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    if service.name == "orders"
        && let Some(pricing) = &shop.pricing
    {
        env.push(plain_env("PRICING_URL", pricing.url.clone()));
        if let Some(timeout) = pricing.timeout_ms {
            env.push(plain_env("PRICING_TIMEOUT_MS", timeout.to_string()));
        }
    }
    if service.name == "web" {
        // Image uploads pass through web on their way to products.
        env.push(plain_env("MAX_BODY_BYTES", (10 * 1024 * 1024).to_string()));
    }
    let container = Container {
        name: service.name.to_owned(),
        image: Some(shop.image_of(service.name)),
        image_pull_policy: Some(shop.image.pull_policy.as_str().to_owned()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: shop.object_name("config"),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(planned.resources.clone()),
        security_context: Some(locked_down()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    Deployment {
        metadata: metadata(shop, name, service.name),
        spec: DeploymentSpec {
            replicas: Some(planned.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(shop, service.name)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(shop, service.name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    // The drain, then in-flight requests and the consumers' last commits.
                    termination_grace_period_seconds: Some(SHUTDOWN_DRAIN_SECS + 25),
                    security_context: Some(pod_security(65532)),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// The ClusterIP Service in front of one service's pods.
pub fn service(shop: &Shop, planned: &Planned) -> KubeService {
    let name = planned.service.name;
    KubeService {
        metadata: metadata(shop, shop.object_name(name), name),
        spec: Some(ServiceSpec {
            selector: Some(selector(shop, name)),
            ports: Some(vec![service_port("http", HTTP_PORT)]),
            ..ServiceSpec::default()
        }),
        ..KubeService::default()
    }
}

/// Keeps one pod of a replicated service up through voluntary disruptions (node drains);
/// `None` for a single replica, where a budget would block drains for ever.
pub fn disruption_budget(shop: &Shop, planned: &Planned) -> Option<PodDisruptionBudget> {
    if planned.replicas < 2 {
        return None;
    }
    let name = planned.service.name;
    Some(PodDisruptionBudget {
        metadata: metadata(shop, shop.object_name(name), name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(shop, name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// The largest body of a JSON or form route: the services' `MAX_BODY_BYTES` default
/// (services/kit/src/config.rs). The Ingress refuses larger bodies itself, so no service closes a
/// connection the ingress controller is still sending on (which it would answer with a 502).
pub const MAX_BODY: &str = "64k";
/// The routes that take image uploads (products' API and the admin page's form through web), as
/// ingress-nginx regular expressions, and the body they read before their own rules answer
/// (`MAX_UPLOAD_BYTES`, services/kit/src/config.rs).
pub const UPLOAD_ROUTES: [(&str, &str); 2] = [
    ("/api/products/[^/]+/images$", "products"),
    ("/admin/products/[^/]+/images$", "web"),
];
pub const MAX_UPLOAD_BODY: &str = "10m";

fn ingress_path(shop: &Shop, path: &str, path_type: &str, service: &str) -> HTTPIngressPath {
    HTTPIngressPath {
        path: Some(path.to_owned()),
        path_type: path_type.into(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: shop.object_name(service),
                port: Some(ServiceBackendPort {
                    name: Some("http".into()),
                    ..ServiceBackendPort::default()
                }),
            }),
            ..IngressBackend::default()
        },
    }
}

fn ingress_of(
    shop: &Shop,
    name: &str,
    annotations: &[(&str, &str)],
    paths: Vec<HTTPIngressPath>,
) -> Ingress {
    let mut meta = metadata(shop, shop.object_name(name), "ingress");
    meta.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            tls: shop.tls_secret.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![shop.host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(shop.host.clone()),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

/// The routes of docs/architecture.md on the shop's host: `{shop}-ingress` with every service's
/// prefix and the JSON body limit, and `{shop}-uploads` with the image upload routes and theirs
/// (ingress-nginx sets a body limit per Ingress, not per path).
pub fn ingresses(shop: &Shop) -> Vec<Ingress> {
    let mut paths = Vec::new();
    for service in &SERVICES {
        for route in service.routes {
            paths.push(ingress_path(shop, route, "Prefix", service.name));
        }
    }
    let uploads = UPLOAD_ROUTES
        .iter()
        .map(|(path, service)| ingress_path(shop, path, "ImplementationSpecific", service))
        .collect();
    vec![
        ingress_of(
            shop,
            "ingress",
            &[
                // The notifications socket lives long.
                ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
                ("nginx.ingress.kubernetes.io/proxy-body-size", MAX_BODY),
            ],
            paths,
        ),
        ingress_of(
            shop,
            "uploads",
            &[
                ("nginx.ingress.kubernetes.io/use-regex", "true"),
                (
                    "nginx.ingress.kubernetes.io/proxy-body-size",
                    MAX_UPLOAD_BODY,
                ),
            ],
            uploads,
        ),
    ]
}

fn pods_of(shop: &Shop, component: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector(shop, component)),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn port(port: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some(protocol.into()),
        ..NetworkPolicyPort::default()
    }
}

fn http_port() -> NetworkPolicyPort {
    port(HTTP_PORT, "TCP")
}

/// One policy per service from the service graph: ingress only from the ingress controller's
/// namespace and from the services that call it; egress only to the services it
/// calls, auth (JWKS), DNS, and — since Kafka, MongoDB, Redis and S3 may run anywhere — any
/// address on their ports. Everything else is denied.
pub fn network_policy(shop: &Shop, planned: &Planned) -> NetworkPolicy {
    let service = planned.service;
    let callers: Vec<NetworkPolicyPeer> = SERVICES
        .iter()
        .filter(|s| s.calls.contains(&service.name) || (service.name == "auth" && s.name != "auth"))
        .map(|s| pods_of(shop, s.name))
        .collect();
    // Every service has routes, so the ingress controller reaches each one.
    let controller = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(
                [(
                    "kubernetes.io/metadata.name".to_owned(),
                    shop.ingress_controller_namespace.clone(),
                )]
                .into(),
            ),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(vec![controller]),
        ports: Some(vec![http_port()]),
    }];
    if !callers.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(callers),
            ports: Some(vec![http_port()]),
        });
    }
    let mut internal: Vec<NetworkPolicyPeer> =
        service.calls.iter().map(|s| pods_of(shop, s)).collect();
    if service.name != "auth" {
        internal.push(pods_of(shop, "auth"));
    }
    let mut egress = vec![NetworkPolicyEgressRule {
        ports: Some(
            ["UDP", "TCP"]
                .into_iter()
                .map(|protocol| port(53, protocol))
                .collect(),
        ),
        ..NetworkPolicyEgressRule::default()
    }];
    if !internal.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(internal),
            ports: Some(vec![http_port()]),
        });
    }
    let mut backend_ports = vec![6379];
    if service.needs.kafka {
        backend_ports.push(9092);
    }
    if service.needs.mongodb {
        backend_ports.push(MONGODB_PORT);
    }
    if service.needs.object_storage {
        backend_ports.extend([9000, 443, 80]);
    }
    if service.needs.stripe && service.name != "web" {
        backend_ports.push(443);
    }
    if service.name == "orders"
        && let Some(pricing) = &shop.pricing
    {
        backend_ports.push(i32::from(pricing.port));
    }
    backend_ports.sort_unstable();
    backend_ports.dedup();
    egress.push(NetworkPolicyEgressRule {
        ports: Some(
            backend_ports
                .into_iter()
                .map(|number| port(number, "TCP"))
                .collect(),
        ),
        ..NetworkPolicyEgressRule::default()
    });
    NetworkPolicy {
        metadata: metadata(shop, shop.object_name(service.name), service.name),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(shop, service.name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
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
        args: Some(vec!["--bind_ip_all".into()]),
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
