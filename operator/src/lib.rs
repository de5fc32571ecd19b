//! The Storefront operator: a `Storefront` resource in, a whole shop out (ARCHITECTURE §8).
//!
//! So far this crate holds the resource and what is pure: [`crd`] (the types the CRD is generated
//! from), [`shop`] (validation into the form builders use), and [`build`] (the Kubernetes objects
//! of a shop). The controller that applies them — server-side apply, external resources, status,
//! finalizer — builds on these.

pub mod build;
pub mod crd;
pub mod shop;

use kube::CustomResourceExt;

/// The CRD as YAML, as committed in `crds/storefront.yaml`.
pub fn crd_yaml() -> String {
    let crd = crd::Storefront::crd();
    format!(
        "# Generated from operator/src/crd.rs by `cargo run -p storefront-operator --bin crdgen`; do not edit.\n{}",
        serde_yaml::to_string(&crd).expect("a CRD serializes")
    )
}
