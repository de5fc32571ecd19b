//! The services a shop is made of (docs/architecture.md §3), and the validated form of a
//! `Storefront` that the builders work from ([`Shop`], made only by `controller/validate.rs`).

use k8s_openapi::{
    api::core::v1::ResourceRequirements,
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::OwnerReference},
};
use sha2::{Digest, Sha256};

use crate::crd::{ImageSpec, KafkaSpec, ObjectStorageSpec, PaymentsSpec, SecretKeyRef};

/// Every container listens here; Services expose it under the same number.
pub const HTTP_PORT: i32 = 8080;

/// What a service needs besides its own Deployment (drives env, secrets and NetworkPolicies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub mongodb: bool,
    pub kafka: bool,
    pub object_storage: bool,
    pub stripe: bool,
}

/// One service of the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    /// Ingress path prefixes (docs/architecture.md §3); the longest prefix wins, `/` is web.
    pub routes: &'static [&'static str],
    pub needs: Needs,
    /// Services it calls over HTTP (besides auth's JWKS, which every verifier fetches).
    pub calls: &'static [&'static str],
}

const BACKEND: Needs = Needs {
    mongodb: true,
    kafka: true,
    object_storage: false,
    stripe: false,
};

pub const SERVICES: [Service; 7] = [
    Service {
        name: "auth",
        routes: &["/api/users"],
        needs: BACKEND,
        calls: &[],
    },
    Service {
        name: "products",
        routes: &["/api/products"],
        needs: Needs {
            object_storage: true,
            ..BACKEND
        },
        calls: &[],
    },
    Service {
        name: "cart",
        routes: &["/api/cart"],
        needs: BACKEND,
        calls: &["orders"],
    },
    Service {
        name: "orders",
        routes: &["/api/orders"],
        needs: BACKEND,
        calls: &[],
    },
    Service {
        name: "payments",
        routes: &["/api/payments"],
        needs: Needs {
            stripe: true,
            ..BACKEND
        },
        // The payment hold: orders, the owner of the order's fate, must agree before a charge.
        calls: &["orders"],
    },
    Service {
        name: "notifications",
        routes: &["/api/notifications", "/ws/notifications"],
        needs: BACKEND,
        calls: &[],
    },
    Service {
        name: "web",
        routes: &["/"],
        needs: Needs {
            mongodb: false,
            kafka: false,
            object_storage: false,
            stripe: true,
        },
        calls: &[
            "auth",
            "products",
            "cart",
            "orders",
            "payments",
            "notifications",
        ],
    },
];

/// A service with its replicas and resources decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub service: Service,
    pub replicas: i32,
    pub resources: ResourceRequirements,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Databases {
    /// A StatefulSet per service database, with a volume of `storage`.
    Managed {
        storage: Quantity,
        storage_class: Option<String>,
        image: String,
    },
    /// The platform's MongoDB; the operator makes a database and a user per service with the
    /// admin connection string in this Secret key.
    External { admin_uri: SecretKeyRef },
}

/// A `Storefront` that passed validation: what the builders work from.
#[derive(Debug, Clone, PartialEq)]
pub struct Shop {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub host: String,
    pub tls_secret: Option<String>,
    pub ingress_controller_namespace: String,
    pub image: ImageSpec,
    pub services: Vec<Planned>,
    pub kafka: KafkaSpec,
    pub databases: Databases,
    pub object_storage: ObjectStorageSpec,
    pub redis_url: String,
    pub payments: PaymentsSpec,
    pub pricing: Option<Pricing>,
    /// Where every service sends its traces, if anywhere.
    pub telemetry: Option<Endpoint>,
}

/// An http(s) URL outside the shop a service calls, validated: its NetworkPolicy allows the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub port: u16,
}

/// The shop's own pricing function, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Its URL, and the port orders reaches it on (its NetworkPolicy allows it).
    pub endpoint: Endpoint,
    pub timeout_ms: Option<u32>,
}

impl Shop {
    /// `{name}-{suffix}`: every object the operator owns is named this way.
    pub fn object_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// The service's in-cluster URL.
    pub fn url_of(&self, service: &str) -> String {
        format!("http://{}:{HTTP_PORT}", self.object_name(service))
    }

    pub fn public_url(&self) -> String {
        let scheme = if self.tls_secret.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host)
    }

    pub fn image_of(&self, service: &str) -> String {
        format!(
            "{}/storefront-{service}:{}",
            self.image.registry.trim_end_matches('/'),
            self.image.tag
        )
    }

    /// The services with a database of their own (all but web).
    pub fn database_services(&self) -> impl Iterator<Item = &Planned> {
        self.services.iter().filter(|p| p.service.needs.mongodb)
    }

    /// A service's MongoDB database: `{namespace}_{name}_{service}`, so shops of the same name in
    /// two namespaces never share one on a common MongoDB (at most 63 bytes: a longer name keeps
    /// its start and gets a hash of the whole).
    pub fn database_name(&self, service: &str) -> String {
        let full = format!("{}_{}_{service}", self.namespace, self.name).replace('.', "-");
        if full.len() <= 63 {
            return full;
        }
        let digest = Sha256::digest(full.as_bytes());
        let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}_{hash}", &full[..50])
    }

    /// Kafka topics are `{prefix}.{aggregate}` (docs/architecture.md §5). The prefix is
    /// `{namespace}.{name}`: "the Storefront's name" there lets two shops of the same
    /// name in two namespaces share one broker's topics, and Storefront names are unique only
    /// within a namespace.
    pub fn topic_prefix(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}
