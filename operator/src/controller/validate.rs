//! A `Storefront` checked into a [`Shop`]: everything its schema cannot check, once, with a
//! message that names the field that is wrong and why — the reconcile's first step (validate →
//! build → the generated Secrets → dereference → apply). Builders never see the raw resource.

use k8s_openapi::{
    api::core::v1::ResourceRequirements, apimachinery::pkg::api::resource::Quantity,
};
use kube::{Resource, ResourceExt};

use crate::{
    crd::{MongoMode, ServiceSpec, Size, Storefront},
    shop::{Databases, Endpoint, Planned, Pricing, SERVICES, Service, Shop},
};

/// Why a `Storefront` cannot be built; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the Storefront has no {0} yet (it was not read from the API server)")]
    Metadata(&'static str),
    #[error("spec.{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

fn field(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid::Field {
        field,
        message: message.into(),
    }
}

/// `url` as an http(s) URL with a host, and the port it names (or its scheme's).
fn endpoint(name: &'static str, url: &str) -> Result<Endpoint, Invalid> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| field(name, format!("{url:?}: {e}")))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return Err(field(name, "must be an http:// or https:// URL")),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(field(name, "has no host"));
    }
    Ok(Endpoint {
        url: url.to_owned(),
        port: uri.port_u16().unwrap_or(default_port),
    })
}

impl Shop {
    pub fn validate(storefront: &Storefront) -> Result<Shop, Invalid> {
        let spec = &storefront.spec;
        let name = storefront.name_any();
        let namespace = storefront
            .namespace()
            .ok_or(Invalid::Metadata("namespace"))?;
        let owner = storefront
            .controller_owner_ref(&())
            .ok_or(Invalid::Metadata("uid"))?;
        // Object names are `{name}-{service}` (the longest: `-notifications`, 14 characters) and
        // must stay DNS labels of at most 63.
        if name.len() > 40 {
            return Err(Invalid::Field {
                field: "metadata.name",
                message: format!("{name:?} is longer than 40 characters"),
            });
        }
        if !is_dns_name(&spec.host) {
            return Err(field(
                "host",
                format!("{:?} is not a DNS name such as shop.example.com", spec.host),
            ));
        }
        if let Some(secret) = &spec.tls_secret
            && !is_dns_name(secret)
        {
            return Err(field(
                "tlsSecret",
                format!("{secret:?} is not a Secret name"),
            ));
        }
        for server in spec.kafka.bootstrap_servers.split(',') {
            let valid = server
                .trim()
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(field(
                    "kafka.bootstrapServers",
                    format!("{server:?} is not host:port"),
                ));
            }
        }
        if !spec.redis.url.starts_with("redis://") && !spec.redis.url.starts_with("rediss://") {
            return Err(field("redis.url", "must start with redis:// or rediss://"));
        }
        for (name, url) in [
            (
                "objectStorage.endpoint",
                Some(&spec.object_storage.endpoint),
            ),
            ("payments.apiBase", spec.payments.api_base.as_ref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(field(name, format!("{url:?} is not an http(s) URL")));
            }
        }
        let pricing = match &spec.pricing {
            None => None,
            Some(pricing) => Some(Pricing {
                endpoint: endpoint("pricing.url", &pricing.url)?,
                timeout_ms: pricing.timeout_ms,
            }),
        };
        let telemetry = spec
            .telemetry
            .as_ref()
            .map(|t| endpoint("telemetry.otlpEndpoint", &t.otlp_endpoint))
            .transpose()?;
        if !is_bucket_name(&spec.object_storage.bucket) {
            return Err(field(
                "objectStorage.bucket",
                "3 to 63 lowercase letters, digits, dots and dashes, starting and ending with a letter or digit",
            ));
        }
        let databases = match spec.mongodb.mode {
            // StatefulSet names stay under 53 characters (their pods' revision label is the name
            // and an 11-character hash): `{name}-notifications-db` leaves 35 for the name.
            MongoMode::Managed if name.len() > 35 => {
                return Err(Invalid::Field {
                    field: "metadata.name",
                    message: format!(
                        "{name:?} is longer than 35 characters, too long for the StatefulSets \
                         {{name}}-{{service}}-db of mongodb mode managed"
                    ),
                });
            }
            MongoMode::Managed => Databases::Managed {
                storage: quantity("mongodb.storage", &spec.mongodb.storage)?,
                storage_class: spec.mongodb.storage_class.clone(),
                image: spec.mongodb.image.clone(),
            },
            MongoMode::External => Databases::External {
                admin_uri: spec.mongodb.uri_secret.clone().ok_or_else(|| {
                    field(
                        "mongodb.uriSecret",
                        "mode external needs the Secret key with the admin connection string",
                    )
                })?,
            },
        };
        let overrides = &spec.services;
        let services = SERVICES
            .iter()
            .map(|service| {
                let custom = match service.name {
                    "auth" => &overrides.auth,
                    "products" => &overrides.products,
                    "cart" => &overrides.cart,
                    "orders" => &overrides.orders,
                    "payments" => &overrides.payments,
                    "notifications" => &overrides.notifications,
                    _ => &overrides.web,
                };
                plan(*service, spec.size, custom.as_ref())
            })
            .collect();
        Ok(Shop {
            name,
            namespace,
            owner,
            host: spec.host.to_ascii_lowercase(),
            tls_secret: spec.tls_secret.clone(),
            ingress_controller_namespace: spec.ingress_controller_namespace.clone(),
            image: spec.image.clone(),
            services,
            kafka: spec.kafka.clone(),
            databases,
            object_storage: spec.object_storage.clone(),
            redis_url: spec.redis.url.clone(),
            payments: spec.payments.clone(),
            pricing,
            telemetry,
        })
    }
}

/// Replicas and resources from the size preset, then the service's own override.
fn plan(service: Service, size: Size, custom: Option<&ServiceSpec>) -> Planned {
    let (replicas, cpu_request, memory, cpu_limit) = match size {
        Size::Small => (1, "50m", "64Mi", "500m"),
        Size::Medium => (2, "100m", "128Mi", "1"),
        Size::Large => (3, "250m", "256Mi", "2"),
    };
    let preset = ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_owned(), Quantity(cpu_request.into())),
                ("memory".to_owned(), Quantity(memory.into())),
            ]
            .into(),
        ),
        limits: Some(
            [
                ("cpu".to_owned(), Quantity(cpu_limit.into())),
                // Rust services hold steady memory; the limit is twice the request.
                ("memory".to_owned(), Quantity(double(memory))),
            ]
            .into(),
        ),
        ..ResourceRequirements::default()
    };
    Planned {
        service,
        replicas: custom.and_then(|c| c.replicas).unwrap_or(replicas),
        resources: custom.and_then(|c| c.resources.clone()).unwrap_or(preset),
    }
}

fn double(mebibytes: &str) -> String {
    let n: u32 = mebibytes.trim_end_matches("Mi").parse().unwrap_or(64);
    format!("{}Mi", n * 2)
}

/// A Kubernetes quantity such as `1Gi`, `500Mi` or `10G`.
fn quantity(name: &'static str, text: &str) -> Result<Quantity, Invalid> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &text[digits.len()..];
    let known = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ];
    if digits.is_empty() || digits.parse::<f64>().is_err() || !known.contains(&suffix) {
        return Err(field(
            name,
            format!("{text:?} is not a quantity such as 1Gi or 500Mi"),
        ));
    }
    Ok(Quantity(text.to_owned()))
}

/// RFC 1123 subdomain: dot-separated labels of a-z, 0-9 and inner dashes, 253 characters at most.
fn is_dns_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_bucket_name(text: &str) -> bool {
    (3..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}
