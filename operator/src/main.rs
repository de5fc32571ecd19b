//! `storefront-operator`: watches `Storefront` resources in every namespace (or in
//! `WATCH_NAMESPACE`) and reconciles each into a running shop. Reads its cluster credentials the
//! usual way (in-cluster service account, else `KUBECONFIG`).
//!
//! Several replicas are safe: they elect a leader through the Lease `storefront-operator` in
//! `POD_NAMESPACE`, and only the leader reconciles; a leader that loses its lease stops and exits
//! (its pod restarts and waits as a follower). `/metrics`, `/healthz` and `/readyz` are served on
//! `METRICS_ADDR` (default `0.0.0.0:8080`) by every replica.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use storefront_operator::controller::{Context, run};
use tokio::sync::watch;

/// The Lease the replicas compete for.
const LEASE: &str = "storefront-operator";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs (JSON with `LOG_FORMAT=json`), and traces of every reconcile when
    // `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the chart's `otlpEndpoint`; docs/traces.md).
    storefront_kit::telemetry::init_with_filter("operator", "info,kube=warn");
    let result = operate().await;
    storefront_kit::telemetry::shutdown();
    result
}

async fn operate() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await?;
    // Every namespace, or only `WATCH_NAMESPACE` (a namespaced install).
    let namespace = std::env::var("WATCH_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty());
    let ctx = Context::discover(client.clone(), namespace).await?;

    let addr: SocketAddr = std::env::var("METRICS_ADDR")
        .unwrap_or_else(|_| "0.0.0.0:8080".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(ctx.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });

    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("storefront-operator-{}", std::process::id()));
    let lease_namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    let lease = LeaseManagerBuilder::new(client, LEASE)
        .with_namespace(&lease_namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (mut leading, _lease_task) = lease.watch().await;
    tracing::info!(%identity, lease = %format!("{lease_namespace}/{LEASE}"), "waiting to lead");
    while !*leading.borrow_and_update() {
        leading.changed().await?;
    }
    tracing::info!(%identity, "leading: reconciling Storefronts");

    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = {
        let lost = lost.clone();
        async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = lose(&mut leading) => {
                    lost.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    };
    run(ctx, stop).await;
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        return Err("lost the leader lease; exiting so that the pod restarts as a follower".into());
    }
    Ok(())
}

/// Resolves when this replica stops being the leader.
async fn lose(leading: &mut watch::Receiver<bool>) {
    loop {
        if leading.changed().await.is_err() || !*leading.borrow_and_update() {
            return;
        }
    }
}

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
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
        () = terminate => {}
    }
}
