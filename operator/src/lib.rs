//! The Storefront operator: a `Storefront` resource in, a whole shop out (ARCHITECTURE §8).
//!
//! - [`crd`]: the types the CRD is generated from;
//! - [`shop`]: validation into the form the builders use;
//! - [`build`]: the Kubernetes objects of a shop (pure);
//! - [`controller`]: the reconcile — finalizer, apply only on change, prune, status;
//! - [`kafka`], [`databases`], [`storage`]: the shop's topics, database users and image bucket
//!   (external resources).
//!
//! Not yet: Kubernetes Events, metrics and leader election.

pub mod build;
pub mod controller;
pub mod crd;
pub mod databases;
pub mod kafka;
pub mod shop;
pub mod storage;

use kube::CustomResourceExt;

/// The CRD as YAML, as committed in `crds/storefront.yaml`.
pub fn crd_yaml() -> String {
    let crd = crd::Storefront::crd();
    format!(
        "# Generated from operator/src/crd.rs by `cargo run -p storefront-operator --bin crdgen`; do not edit.\n{}",
        serde_yaml::to_string(&crd).expect("a CRD serializes")
    )
}
