//! The NetworkPolicy of each service: who may reach it, what it may reach.

use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
        NetworkPolicyPort, NetworkPolicySpec,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{MONGODB_PORT, metadata, selector};
use crate::shop::{HTTP_PORT, Planned, SERVICES, Shop};

pub(super) fn pods_of(shop: &Shop, component: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector(shop, component)),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

pub(super) fn port(port: i32, protocol: &str) -> NetworkPolicyPort {
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
        backend_ports.push(i32::from(pricing.endpoint.port));
    }
    if let Some(telemetry) = &shop.telemetry {
        backend_ports.push(i32::from(telemetry.port));
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
