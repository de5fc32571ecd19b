//! The Ingresses in front of the shop: body limits, upload routes, TLS.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::metadata;
use crate::shop::{SERVICES, Shop};

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
