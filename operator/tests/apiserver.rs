//! The operator against a real Kubernetes API server: Debian's kube-apiserver 1.20 with etcd,
//! started by `cargo xtask test` (no kubelet or controller-manager, so tests play the kubelet by
//! patching Deployment status, and nothing collects garbage). Each test has its own namespace and
//! runs its own controller watching only that namespace.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        coordination::v1::Lease,
        core::v1::{ConfigMap, Namespace, Secret, Service},
        events::v1::Event as KubeEvent,
        networking::v1::{Ingress, NetworkPolicy},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions},
};
use serde_json::{Value, json};
use storefront_operator::{
    controller::{Context, run},
    crd::Storefront,
};
use support::{eventually, unique, var};
use tokio::sync::oneshot;

mod support;

/// A client of the test API server, with the CRD installed.
async fn cluster() -> Client {
    let client = client().await;
    install_crd(&client).await;
    client
}

async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(var("STOREFRONT_TEST_KUBECONFIG")).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The committed CRD (`crds/storefront.yaml`), applied and established.
async fn install_crd(client: &Client) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/storefront.yaml"),
    )
    .unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "storefronts.storefront.dev";
    api.patch(
        name,
        &PatchParams::apply("storefront-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api, name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD is established within 30 s")
    .unwrap();
}

/// A namespace of this test's own.
async fn namespace(client: &Client, label: &str) -> String {
    let name = unique(label, '-');
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap(),
    )
    .await
    .unwrap();
    name
}

async fn secret(client: &Client, namespace: &str, name: &str, data: Value) {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": name }, "stringData": data }))
            .unwrap(),
    )
    .await
    .unwrap();
}

/// A namespace of this test's own with the Secrets a Storefront names.
async fn shop_namespace(client: &Client, label: &str) -> String {
    let ns = namespace(client, label).await;
    backend_secrets(client, &ns).await;
    ns
}

/// The Secrets a Storefront names: the object store's keys, Stripe's, the MongoDB admin string.
async fn backend_secrets(client: &Client, namespace: &str) {
    secret(
        client,
        namespace,
        "minio-credentials",
        json!({
            "accessKey": var("STOREFRONT_TEST_S3_ACCESS_KEY"),
            "secretKey": var("STOREFRONT_TEST_S3_SECRET_KEY"),
        }),
    )
    .await;
    secret(
        client,
        namespace,
        "stripe",
        json!({ "secretKey": "sk_test_x", "publishableKey": "pk_test_x", "webhookSecret": "whsec_x" }),
    )
    .await;
    secret(
        client,
        namespace,
        "mongodb-admin",
        json!({ "uri": var("STOREFRONT_TEST_MONGODB_ADMIN_URI") }),
    )
    .await;
}

/// A Storefront on the test stack's backends.
fn storefront(name: &str, bucket: &str, policy: &str) -> Value {
    json!({
        "apiVersion": "storefront.dev/v1alpha1",
        "kind": "Storefront",
        "metadata": { "name": name },
        "spec": {
            "host": "shop.example.com",
            "image": { "tag": "1.0.0" },
            "kafka": { "bootstrapServers": var("STOREFRONT_TEST_KAFKA_BOOTSTRAP") },
            "mongodb": { "mode": "external", "uriSecret": { "name": "mongodb-admin", "key": "uri" } },
            "objectStorage": {
                "endpoint": var("STOREFRONT_TEST_S3_ENDPOINT"),
                "bucket": bucket,
                "credentialsSecret": "minio-credentials",
            },
            "redis": { "url": "redis://redis:6379" },
            "payments": { "stripeSecret": "stripe" },
            "deletionPolicy": policy,
        },
    })
}

async fn create(storefronts: &Api<Storefront>, name: &str, bucket: &str, policy: &str) {
    let object = serde_json::from_value(storefront(name, bucket, policy)).unwrap();
    storefronts
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// The operator, watching `namespace`, until the answer is dropped.
async fn operator(client: &Client, namespace: &str) -> oneshot::Sender<()> {
    let ctx = Context::discover(client.clone(), Some(namespace.to_owned()))
        .await
        .unwrap();
    assert!(
        !ctx.budgets,
        "Kubernetes 1.20 serves no policy/v1 budgets, and the operator noticed"
    );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run(ctx, async move {
        let _ = stopped.await;
    }));
    stop
}

fn condition(storefront: &Storefront, kind: &str) -> Option<(String, String, String)> {
    storefront
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn condition_is(api: &Api<Storefront>, name: &str, kind: &str, status: &str) -> Storefront {
    eventually(60, &format!("{kind} {status}"), || async {
        let storefront = api.get(name).await.ok()?;
        (condition(&storefront, kind)?.0 == status).then_some(storefront)
    })
    .await
}

/// Plays the kubelet: every Deployment of the namespace reports its replicas ready.
async fn deployments_ready(client: &Client, namespace: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for deployment in api.list(&ListParams::default()).await.unwrap() {
        let replicas = deployment.spec.replicas.unwrap_or(1);
        api.patch_status(
            &deployment.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": {
                "observedGeneration": deployment.metadata.generation,
                "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": replicas, "availableReplicas": replicas,
            }})),
        )
        .await
        .unwrap();
    }
}

/// Names and resource versions of every object of these kinds in the namespace.
async fn versions(client: &Client, namespace: &str) -> BTreeMap<String, String> {
    async fn of<K>(client: &Client, namespace: &str, all: &mut BTreeMap<String, String>)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        for object in api.list(&ListParams::default()).await.unwrap() {
            all.insert(
                format!("{}/{}", K::kind(&()), object.name_any()),
                object.resource_version().unwrap_or_default(),
            );
        }
    }
    let mut all = BTreeMap::new();
    of::<Storefront>(client, namespace, &mut all).await;
    of::<Deployment>(client, namespace, &mut all).await;
    of::<Service>(client, namespace, &mut all).await;
    of::<ConfigMap>(client, namespace, &mut all).await;
    of::<Secret>(client, namespace, &mut all).await;
    of::<NetworkPolicy>(client, namespace, &mut all).await;
    of::<Ingress>(client, namespace, &mut all).await;
    all
}

const SERVICES: [&str; 7] = [
    "auth",
    "products",
    "cart",
    "orders",
    "payments",
    "notifications",
    "web",
];

#[tokio::test]
async fn a_storefront_becomes_a_shop_that_follows_its_spec_and_heals() {
    let client = cluster().await;
    let ns = shop_namespace(&client, "op-shop").await;
    let _operator = operator(&client, &ns).await;
    let storefronts: Api<Storefront> = Api::namespaced(client.clone(), &ns);
    create(&storefronts, "shop", &format!("{ns}-images"), "Retain").await;

    // Every child, owned by the Storefront; the external resources ready.
    let created = condition_is(&storefronts, "shop", "DatabasesReady", "True").await;
    let uid = created.uid().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for service in SERVICES {
        let name = format!("shop-{service}");
        let deployment = deployments.get(&name).await.unwrap();
        let owner = &deployment.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Storefront", uid.as_str())
        );
        assert_eq!(owner.controller, Some(true));
        let image = deployment.spec.template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap();
        assert_eq!(
            image,
            format!("ghcr.io/storefront/storefront-{service}:1.0.0")
        );
        assert_eq!(
            services.get(&name).await.unwrap().owner_references()[0].uid,
            uid
        );
        assert_eq!(
            policies.get(&name).await.unwrap().owner_references()[0].uid,
            uid
        );
        if service != "web" {
            let credentials = secrets.get(&format!("{name}-mongodb")).await.unwrap();
            assert_eq!(credentials.owner_references()[0].uid, uid);
        }
    }
    let ingress = Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("shop-ingress")
        .await
        .unwrap();
    assert_eq!(ingress.owner_references()[0].uid, uid);
    assert_eq!(
        secrets.get("shop-jwt").await.unwrap().owner_references()[0].uid,
        uid
    );
    let status = storefronts.get("shop").await.unwrap();
    for kind in ["KafkaReady", "StorageReady"] {
        assert_eq!(condition(&status, kind).unwrap().0, "True", "{kind}");
    }
    let (available, _, message) = condition(&status, "ServicesAvailable").unwrap();
    assert_eq!(available, "False");
    assert!(
        message.starts_with("waiting for auth (0/1 ready)"),
        "{message}"
    );

    // Every write was recorded as an Event about the Storefront.
    let events: Api<KubeEvent> = Api::namespaced(client.clone(), &ns);
    let notes: Vec<String> = eventually(30, "Events about the Storefront", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let notes: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("shop"))
            .filter_map(|e| Some(format!("{} {}", e.reason.as_deref()?, e.note.as_deref()?)))
            .collect();
        (notes.len() >= 30).then_some(notes)
    })
    .await;
    for expected in [
        "Created Deployment shop-web",
        "Created Secret shop-jwt",
        "Created Ingress shop-ingress",
        "Created Ingress shop-uploads",
        "Created Secret shop-cart-mongodb",
    ] {
        assert!(
            notes.iter().any(|n| n == expected),
            "{expected}: {notes:#?}"
        );
    }
    assert!(
        notes.iter().any(|n| n.starts_with("BucketCreated bucket ")),
        "{notes:#?}"
    );

    // The pods come up (the test plays the kubelet): the shop turns Ready.
    deployments_ready(&client, &ns).await;
    let ready = condition_is(&storefronts, "shop", "Ready", "True").await;
    let status = ready.status.unwrap();
    assert_eq!(status.ready_services.as_deref(), Some("7/7"));
    assert_eq!(status.observed_generation, ready.metadata.generation);

    // Steady state: nothing is written, whatever the watches deliver.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = versions(&client, &ns).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        versions(&client, &ns).await,
        before,
        "writes in steady state"
    );

    // A spec change: the children follow.
    storefronts
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "image": { "tag": "1.1.0" } } })),
        )
        .await
        .unwrap();
    eventually(60, "the Deployments run 1.1.0", || async {
        let web = deployments.get("shop-web").await.ok()?;
        let image = web.spec.template.spec?.containers[0].image.clone()?;
        image.ends_with(":1.1.0").then_some(())
    })
    .await;

    // A deleted child comes back.
    services
        .delete("shop-cart", &DeleteParams::default())
        .await
        .unwrap();
    eventually(60, "the Service shop-cart is back", || async {
        services.get_opt("shop-cart").await.ok()?.map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn deletion_runs_the_finalizer_and_drops_the_databases_only_under_delete() {
    let client = cluster().await;
    let ns = shop_namespace(&client, "op-delete").await;
    let _operator = operator(&client, &ns).await;
    let storefronts: Api<Storefront> = Api::namespaced(client.clone(), &ns);
    for (name, policy) in [("gone", "Delete"), ("kept", "Retain")] {
        create(&storefronts, name, &format!("{ns}-{name}"), policy).await;
    }
    let mongo = mongodb::Client::with_uri_str(var("STOREFRONT_TEST_MONGODB_ADMIN_URI"))
        .await
        .unwrap();
    for name in ["gone", "kept"] {
        let storefront = condition_is(&storefronts, name, "DatabasesReady", "True").await;
        assert_eq!(
            storefront.finalizers(),
            ["storefront.dev/cleanup"],
            "{name}"
        );
        // A service writes into its database, so it exists on the server.
        let uri = secrets_value(&client, &ns, &format!("{name}-cart-mongodb"), "uri").await;
        let service = mongodb::Client::with_uri_str(&uri).await.unwrap();
        service
            .database(&format!("{ns}_{name}_cart"))
            .collection::<mongodb::bson::Document>("carts")
            .insert_one(mongodb::bson::doc! { "ok": true })
            .await
            .unwrap();
    }
    for name in ["gone", "kept"] {
        storefronts
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    // Under Delete the operator stops the services first, deleting their Deployments in the
    // foreground; with no garbage collector here, the test lets them go as it would.
    let collector = tokio::spawn(collect_foreground_deletions(client.clone(), ns.clone()));
    for name in ["gone", "kept"] {
        eventually(60, &format!("{name} is deleted"), || async {
            storefronts
                .get_opt(name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    }
    collector.abort();
    let databases = mongo.list_database_names().await.unwrap();
    assert!(
        !databases.contains(&format!("{ns}_gone_cart")),
        "{databases:?}"
    );
    assert!(
        databases.contains(&format!("{ns}_kept_cart")),
        "{databases:?}"
    );
    // The Delete shop's bucket is gone (making it again creates it); the Retain shop's is there.
    let credentials = storefront_operator::storage::Credentials {
        access_key: var("STOREFRONT_TEST_S3_ACCESS_KEY"),
        secret_key: var("STOREFRONT_TEST_S3_SECRET_KEY"),
    };
    let endpoint = var("STOREFRONT_TEST_S3_ENDPOINT");
    for (name, gone) in [("gone", true), ("kept", false)] {
        let bucket = format!("{ns}-{name}");
        let created = storefront_operator::storage::ensure_bucket(&endpoint, &credentials, &bucket)
            .await
            .unwrap();
        assert_eq!(created, gone, "{bucket}");
    }
}

/// Plays the garbage collector for Deployments deleted in the foreground: drops their
/// `foregroundDeletion` finalizer (their pods, which do not exist here, would be gone).
async fn collect_foreground_deletions(client: Client, namespace: String) {
    let deployments: Api<Deployment> = Api::namespaced(client, &namespace);
    loop {
        for deployment in deployments.list(&ListParams::default()).await.unwrap() {
            if deployment.metadata.deletion_timestamp.is_some()
                && deployment
                    .finalizers()
                    .iter()
                    .any(|f| f == "foregroundDeletion")
            {
                let _ = deployments
                    .patch(
                        &deployment.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
                    )
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn secrets_value(client: &Client, namespace: &str, name: &str, key: &str) -> String {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get(name).await.unwrap();
    String::from_utf8(secret.data.unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn the_schema_refuses_bad_specs_before_the_operator_sees_them() {
    let client = cluster().await;
    let ns = namespace(&client, "op-schema").await;
    // Raw objects: a typed Storefront could not even hold some of these.
    let storefronts: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<Storefront>(&()));
    let refused = |change: fn(&mut Value)| {
        let storefronts = storefronts.clone();
        async move {
            let mut bad = storefront("bad", "bucket", "Retain");
            change(&mut bad);
            let object: DynamicObject = serde_json::from_value(bad).unwrap();
            match storefronts.create(&PostParams::default(), &object).await {
                Err(kube::Error::Api(status)) => status,
                other => panic!("accepted: {other:?}"),
            }
        }
    };
    let status = refused(|s| s["spec"]["kafka"]["partitions"] = json!(0)).await;
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.kafka.partitions"),
        "{}",
        status.message
    );
    let status = refused(|s| s["spec"]["deletionPolicy"] = json!("Sometimes")).await;
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.deletionPolicy"),
        "{}",
        status.message
    );
    let status = refused(|s| {
        s["spec"].as_object_mut().unwrap().remove("host");
    })
    .await;
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("spec.host"), "{}", status.message);
}

#[tokio::test]
async fn the_chart_and_the_example_pass_a_server_side_dry_run() {
    let client = cluster().await;
    // The example's and the chart's namespaces must exist for a dry run of what goes in them.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["shop", "storefront-system", "storefront-data"] {
        let _ = namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap(),
            )
            .await;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let chart = std::process::Command::new(var("STOREFRONT_TEST_HELM"))
        .args(["template", "storefront-operator"])
        .arg(root.join("charts/storefront-operator"))
        .args(["--namespace", "storefront-system"])
        .output()
        .unwrap();
    assert!(
        chart.status.success(),
        "{}",
        String::from_utf8_lossy(&chart.stderr)
    );
    let rendered = std::env::temp_dir().join(format!("chart-{}.yaml", std::process::id()));
    std::fs::write(&rendered, &chart.stdout).unwrap();
    for file in [
        rendered.clone(),
        root.join("manifests/install.yaml"),
        root.join("manifests/dev-backends.yaml"),
        root.join("manifests/example-storefront.yaml"),
    ] {
        let output = std::process::Command::new(var("STOREFRONT_TEST_KUBECTL"))
            .arg("--kubeconfig")
            .arg(var("STOREFRONT_TEST_KUBECONFIG"))
            .args(["apply", "--dry-run=server", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A `storefront-operator` process (the real binary) on the test API server.
struct Replica {
    child: std::process::Child,
    metrics: String,
}

impl Replica {
    fn start(namespace: &str, name: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("{namespace}-{name}.log")))
                .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_storefront-operator"))
            .env("KUBECONFIG", var("STOREFRONT_TEST_KUBECONFIG"))
            .env("WATCH_NAMESPACE", namespace)
            .env("POD_NAMESPACE", namespace)
            .env("POD_NAME", name)
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info,kube=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Replica {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// Reconciles this replica has run, from its `/metrics`.
    async fn reconciles(&self) -> Option<u64> {
        let (host, path) = self.metrics.trim_start_matches("http://").split_once('/')?;
        let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix("storefront_operator_reconciles_total "))?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_other_takes_over_when_it_dies() {
    let client = cluster().await;
    let ns = shop_namespace(&client, "op-lease").await;
    let mut replicas = vec![Replica::start(&ns, "one"), Replica::start(&ns, "two")];
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = |leases: Api<Lease>| async move {
        leases
            .get_opt("storefront-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
    };
    let first = eventually(30, "a leader", || holder(leases.clone())).await;
    let storefronts: Api<Storefront> = Api::namespaced(client.clone(), &ns);
    create(&storefronts, "shop", &format!("{ns}-images"), "Retain").await;
    condition_is(&storefronts, "shop", "DatabasesReady", "True").await;
    // Only the leader reconciles; both serve their metrics.
    let (leader, follower) = if first == "one" { (0, 1) } else { (1, 0) };
    let led = eventually(10, "the leader's metrics", || replicas[leader].reconciles()).await;
    assert!(led > 0);
    let followed = eventually(10, "the follower's metrics", || {
        replicas[follower].reconciles()
    })
    .await;
    assert_eq!(followed, 0, "the follower reconciled");

    // The leader dies without a word; after the lease runs out the other one leads and acts.
    replicas[leader].child.kill().unwrap();
    replicas[leader].child.wait().unwrap();
    let second = eventually(40, "a new leader", || async {
        holder(leases.clone()).await.filter(|h| *h != first)
    })
    .await;
    assert_ne!(second, first);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    services
        .delete("shop-cart", &DeleteParams::default())
        .await
        .unwrap();
    eventually(30, "the new leader brings shop-cart back", || async {
        services.get_opt("shop-cart").await.ok()?.map(|_| ())
    })
    .await;
    assert!(replicas[follower].reconciles().await.unwrap() > 0);
    replicas.clear();
}
