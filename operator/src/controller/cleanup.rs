//! Cleanup before a Storefront goes: the services stopped, then (under
//! `deletionPolicy: Delete`) its topics, databases and bucket removed.

use super::*;

pub(super) async fn cleanup(storefront: &Storefront, ctx: &Context) -> Result<Action, Error> {
    // The children go with the Storefront through their owner references. The external resources
    // go only under `deletionPolicy: Delete`: the topics, each service's database and user, and
    // the bucket with its images. One bounded attempt each: a backend that cannot be reached must
    // not keep the Storefront from being deleted for ever, so the failure is logged and recorded
    // as a Warning Event, and deletion goes on.
    if storefront.spec.deletion_policy == DeletionPolicy::Delete
        && let (Some(namespace), Ok(shop)) = (storefront.namespace(), Shop::validate(storefront))
    {
        let left = |what: &'static str, e: String| async move {
            tracing::warn!(storefront = %key(storefront), error = %e, "could not delete the {what}; left behind");
            let note = format!("{what} left behind: {e}");
            publish(
                ctx,
                storefront,
                Warning,
                "CleanupFailed",
                "Delete",
                note,
                None,
            )
            .await;
        };
        if let Err(e) = stop_services(&ctx.client, &namespace, &shop).await {
            left("services' pods", e).await;
        }
        if let Err(e) = drop_databases(&ctx.client, &namespace, &shop).await {
            left("databases", e).await;
        }
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        let bucket = async {
            let credentials = storage_credentials(&secrets, &shop).await?;
            let o = &shop.object_storage;
            storage::delete_bucket(&o.endpoint, &credentials, &o.bucket).await
        };
        if let Err(e) = bucket.await {
            left("bucket", e.to_string()).await;
        }
        if let Err(e) = kafka::delete(&shop.kafka.bootstrap_servers, &shop.topic_prefix()).await {
            left("topics", e.to_string()).await;
        }
    }
    Ok(Action::await_change())
}

/// How long [`stop_services`] waits for the services' pods to be gone.
pub(super) const STOP_SERVICES: Duration = Duration::from_secs(90);

/// Stops the shop's services before their databases are dropped: a running service writes again
/// (an outbox lease, a processed event) and so makes its database again right after the drop.
/// Their Deployments are deleted in the foreground — the garbage collector removes a Deployment
/// only once its ReplicaSets and their pods are gone — and waited for, bounded: the Storefront
/// must not hang on pods that never go.
pub(super) async fn stop_services(
    client: &Client,
    namespace: &str,
    shop: &Shop,
) -> Result<(), String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let names: Vec<String> = shop
        .services
        .iter()
        .map(|planned| shop.object_name(planned.service.name))
        .collect();
    for name in &names {
        match deployments.delete(name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_SERVICES;
    loop {
        let mut running = Vec::new();
        for name in &names {
            if deployments
                .get_metadata_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                running.push(name.as_str());
            }
        }
        if running.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{} still had pods after {STOP_SERVICES:?}",
                running.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
