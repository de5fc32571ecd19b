//! The Storefront operator: a `Storefront` resource in, a whole shop out (docs/architecture.md §8).
//!
//! - [`crd`](mod@crd): the types the CRD is generated from;
//! - [`shop`]: the services of a shop, and the validated form of a `Storefront` the builders use;
//! - [`controller`]: the reconcile as its steps, in their order — `validate` (into a
//!   [`shop::Shop`]), `build/` (the Kubernetes objects of a shop, pure), `external` (the Secrets
//!   it generates; topics, databases, bucket), `dereference` (every Secret the shop refers to,
//!   read once), `apply` (only on change, then prune), `status`, `events`; with the finalizer's
//!   `cleanup`;
//! - [`kafka`], [`databases`], [`storage`]: the shop's topics, database users and image bucket
//!   (external resources);
//! - [`metrics`]: what `/metrics` shows. Events are recorded by the reconcile; the binary
//!   elects a leader among replicas (a Lease) before it runs the controller.

pub mod controller;
pub mod crd;
pub mod databases;
pub mod kafka;
pub mod metrics;
pub mod shop;
pub mod storage;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRD, with `null` taken out of the enums of optional fields: their schemas say
/// `nullable: true` already, and a `null` enum value breaks older API servers (1.20 misreads
/// the whole CRD) and kubectl's client-side validation.
pub fn crd() -> CustomResourceDefinition {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(values)) = map.get_mut("enum") {
                    values.retain(|v| !v.is_null());
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(crd::Storefront::crd()).expect("a CRD serializes");
    strip(&mut value);
    serde_json::from_value(value).expect("still a CRD")
}

/// The CRD as YAML, as committed in `crds/storefront.yaml`.
pub fn crd_yaml() -> String {
    format!(
        "# Generated from operator/src/crd.rs by `cargo run -p storefront-operator --bin crdgen`; do not edit.\n{}",
        serde_yaml::to_string(&crd()).expect("a CRD serializes")
    )
}
