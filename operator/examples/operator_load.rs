//! `cargo xtask bench operator`'s load: N Storefronts in N namespaces created at once against a
//! real API server, with the controller in this process on a client that counts its requests.
//! Prints the time until every shop's children are applied and its external resources made, until
//! every shop is Ready (the bench plays the kubelet), the reconciles and API writes per Storefront,
//! and the writes during the steady state that follows (the target is zero).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use http::{Method, Request};
use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Namespace, core::v1::Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
    client::ClientBuilder,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{
        controller::Action,
        wait::{await_condition, conditions},
    },
};
use serde_json::json;
use storefront_operator::{
    controller::{self, Context, Error, error_policy, reconcile},
    crd::Storefront,
};

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run `cargo xtask bench operator`"))
}

/// Requests by method, counted below the operator's client.
#[derive(Default)]
struct Requests {
    reads: AtomicU64,
    writes: AtomicU64,
}

async fn config() -> Config {
    let kubeconfig = Kubeconfig::read_from(var("BENCH_KUBECONFIG")).unwrap();
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap()
}

async fn counted_client(requests: Arc<Requests>) -> Client {
    let layer = tower::layer::layer_fn(move |inner| {
        let requests = requests.clone();
        tower::util::MapRequest::new(inner, move |request: Request<kube::client::Body>| {
            let counter = match *request.method() {
                Method::GET => &requests.reads,
                _ => &requests.writes,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            request
        })
    });
    ClientBuilder::try_from(config().await)
        .unwrap()
        .with_layer(&layer)
        .build()
}

fn storefront(name: &str, bucket: &str) -> Storefront {
    serde_json::from_value(json!({
        "apiVersion": "storefront.dev/v1alpha1",
        "kind": "Storefront",
        "metadata": { "name": name },
        "spec": {
            "host": format!("{name}.example.com"),
            "kafka": { "bootstrapServers": var("BENCH_KAFKA") },
            "mongodb": { "mode": "external", "uriSecret": { "name": "mongodb-admin", "key": "uri" } },
            "objectStorage": {
                "endpoint": var("BENCH_S3_ENDPOINT"),
                "bucket": bucket,
                "credentialsSecret": "minio-credentials",
            },
            "redis": { "url": "redis://redis:6379" },
            "payments": { "stripeSecret": "stripe" },
            "deletionPolicy": "Delete",
        },
    }))
    .unwrap()
}

fn condition_true(storefront: &Storefront, kind: &str) -> bool {
    storefront.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    })
}

/// Polls every Storefront until `done` holds for all; answers when.
async fn all(client: &Client, shops: &[(String, String)], done: fn(&Storefront) -> bool) {
    loop {
        let mut waiting = 0;
        for (namespace, name) in shops {
            let api: Api<Storefront> = Api::namespaced(client.clone(), namespace);
            if !api.get(name).await.is_ok_and(|s| done(&s)) {
                waiting += 1;
            }
        }
        if waiting == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() {
    let shops: usize = var("BENCH_SHOPS").parse().unwrap();
    let steady: u64 = var("BENCH_STEADY_SECONDS").parse().unwrap();
    let admin = Client::try_from(config().await).unwrap();

    // The CRD and the namespaces with their Secrets, on an uncounted client.
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/storefront.yaml"),
    )
    .unwrap();
    let crd: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd_name = "storefronts.storefront.dev";
    crds.patch(
        crd_name,
        &PatchParams::apply("bench").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    await_condition(crds, crd_name, conditions::is_crd_established())
        .await
        .unwrap();
    let mut all_shops = Vec::new();
    for i in 0..shops {
        let namespace = format!("bench-{i}");
        Api::<Namespace>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": namespace } })).unwrap(),
            )
            .await
            .unwrap();
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
        for (name, data) in [
            (
                "minio-credentials",
                json!({ "accessKey": var("BENCH_S3_ACCESS_KEY"), "secretKey": var("BENCH_S3_SECRET_KEY") }),
            ),
            (
                "stripe",
                json!({ "secretKey": "sk_test_x", "publishableKey": "pk_test_x", "webhookSecret": "whsec_x" }),
            ),
            (
                "mongodb-admin",
                json!({ "uri": var("BENCH_MONGODB_ADMIN_URI") }),
            ),
        ] {
            secrets
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(
                        json!({ "metadata": { "name": name }, "stringData": data }),
                    )
                    .unwrap(),
                )
                .await
                .unwrap();
        }
        all_shops.push((namespace, format!("shop-{i}")));
    }

    // The operator, on the counted client, counting its reconciles per Storefront.
    let requests = Arc::new(Requests::default());
    let client = counted_client(requests.clone()).await;
    let ctx = Context::discover(client, None).await.unwrap();
    let reconciles: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let counting = {
        let reconciles = reconciles.clone();
        move |storefront: Arc<Storefront>, ctx: Arc<Context>| {
            *reconciles
                .lock()
                .unwrap()
                .entry(storefront.name_any())
                .or_default() += 1;
            async move { reconcile(storefront, ctx).await }
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(
        controller::controller(&ctx)
            .graceful_shutdown_on(async move {
                let _ = stopped.await;
            })
            .run(
                counting,
                |s: Arc<Storefront>, e: &Error, c: Arc<Context>| -> Action {
                    error_policy(s, e, c)
                },
                ctx.clone(),
            )
            .for_each(|_| async {}),
    );

    let started = Instant::now();
    let creates = all_shops.iter().enumerate().map(|(i, (namespace, name))| {
        let api: Api<Storefront> = Api::namespaced(admin.clone(), namespace);
        let object = storefront(name, &format!("bench-images-{i}"));
        async move { api.create(&PostParams::default(), &object).await.unwrap() }
    });
    futures::future::join_all(creates).await;
    all(&admin, &all_shops, |s| {
        ["KafkaReady", "DatabasesReady", "StorageReady"]
            .iter()
            .all(|kind| condition_true(s, kind))
    })
    .await;
    let applied = started.elapsed();

    // Play the kubelet: every Deployment reports its replicas ready.
    for (namespace, _) in &all_shops {
        let api: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
        for deployment in api.list(&ListParams::default()).await.unwrap() {
            let replicas = deployment.spec.replicas.unwrap_or(1);
            api.patch_status(
                &deployment.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": {
                    "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas,
                }})),
            )
            .await
            .unwrap();
        }
    }
    all(&admin, &all_shops, |s| condition_true(s, "Ready")).await;
    let ready = started.elapsed();
    let writes = requests.writes.load(Ordering::Relaxed);
    let reads = requests.reads.load(Ordering::Relaxed);
    let total_reconciles: u64 = reconciles.lock().unwrap().values().sum();
    let n = shops as f64;
    println!("  {shops} Storefronts in {shops} namespaces, created at once:");
    println!(
        "  children applied, topics, database users and bucket made: {:>7.2} s",
        applied.as_secs_f64()
    );
    println!(
        "  every shop Ready (Deployments patched ready by the bench):  {:>7.2} s",
        ready.as_secs_f64()
    );
    println!(
        "  per Storefront until Ready: {:.1} reconciles, {:.1} API writes, {:.1} API reads",
        total_reconciles as f64 / n,
        writes as f64 / n,
        reads as f64 / n
    );

    // Steady state: nothing changes; count what the operator still does.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (writes_before, reads_before) = (
        requests.writes.load(Ordering::Relaxed),
        requests.reads.load(Ordering::Relaxed),
    );
    let reconciles_before: u64 = reconciles.lock().unwrap().values().sum();
    tokio::time::sleep(Duration::from_secs(steady)).await;
    let steady_writes = requests.writes.load(Ordering::Relaxed) - writes_before;
    let steady_reads = requests.reads.load(Ordering::Relaxed) - reads_before;
    let steady_reconciles = reconciles.lock().unwrap().values().sum::<u64>() - reconciles_before;
    println!(
        "  steady state, the next {steady} s: {steady_writes} API writes (target 0), {steady_reconciles} reconciles, {steady_reads} reads"
    );
    let _ = stop.send(());
    let _ = operator.await;
}
