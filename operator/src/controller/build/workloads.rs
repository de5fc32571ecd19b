//! A service's Deployment, Service and PodDisruptionBudget.

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource,
            PodSpec, PodTemplateSpec, SecretVolumeSource, Service as KubeService, ServiceSpec,
            Volume, VolumeMount,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::{
    ADMIN_SECRET, SHUTDOWN_DRAIN_SECS, SIGNING_KEY_SECRET, labels, locked_down, metadata,
    plain_env, pod_security, probe, secret_env, secrets::database_secret_name, selector,
    service_port,
};
use crate::shop::{HTTP_PORT, Planned, Shop};

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
        env.push(plain_env("PRICING_URL", pricing.endpoint.url.clone()));
        if let Some(timeout) = pricing.timeout_ms {
            env.push(plain_env("PRICING_TIMEOUT_MS", timeout.to_string()));
        }
    }
    if let Some(telemetry) = &shop.telemetry {
        // In the pod's own env, not the shared ConfigMap: setting or changing it rolls the pods,
        // which read their environment only when they start.
        env.push(plain_env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            telemetry.url.clone(),
        ));
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
