//! `storefront-operator`: watches `Storefront` resources in every namespace (or in
//! `WATCH_NAMESPACE`) and reconciles each into a running shop. Reads its cluster credentials the
//! usual way (in-cluster service account, else `KUBECONFIG`).

use kube::Client;
use storefront_operator::controller::{Context, run};

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
    // Every namespace, or only `WATCH_NAMESPACE` (a namespaced install).
    let namespace = std::env::var("WATCH_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty());
    let ctx = Context::discover(client, namespace).await?;
    run(ctx, shutdown_signal()).await;
    Ok(())
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
