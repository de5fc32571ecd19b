//! `storefront-operator`: watches `Storefront` resources in every namespace and reconciles each
//! into a running shop. Reads its cluster credentials the usual way (in-cluster service account,
//! else `KUBECONFIG`).

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client,
    runtime::{Controller, watcher},
};
use storefront_operator::{
    build::MANAGER,
    controller::{Context, error_policy, reconcile},
    crd::Storefront,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let client = Client::try_default().await?;
    // Only the children this operator made wake it.
    let children =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    Controller::new(
        Api::<Storefront>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Deployment>::all(client.clone()), children.clone())
    .owns(Api::<Service>::all(client.clone()), children.clone())
    .owns(Api::<ConfigMap>::all(client.clone()), children.clone())
    .owns(Api::<Ingress>::all(client.clone()), children.clone())
    .owns(Api::<NetworkPolicy>::all(client.clone()), children.clone())
    .owns(Api::<PodDisruptionBudget>::all(client.clone()), children)
    .shutdown_on_signal()
    .run(reconcile, error_policy, Context::new(client))
    .for_each(|result| async move {
        match result {
            Ok((object, _)) => tracing::debug!(storefront = %object, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile error (retried)"),
        }
    })
    .await;
    Ok(())
}
