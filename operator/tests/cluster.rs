//! The platform engineer's path on a real cluster, and day two: the single-node Kubernetes of
//! `cargo xtask cluster` (kubelet, containerd, kube-proxy, cluster DNS), with the shop's images of
//! this build imported by `cargo xtask test` (the cluster profile of `.config/nextest.toml`).
//!
//! `helm install` of the chart runs the operator in-cluster under the chart's ServiceAccount (two
//! replicas electing a leader); the development backends of `manifests/dev-backends-local.yaml`
//! and the Storefront of `manifests/example-storefront.yaml` are applied as a platform engineer
//! would; then a customer buys through the cluster network (no Ingress controller here: the
//! Services' cluster IPs, reachable from the host through kube-proxy), and day two is played: a new
//! image tag rolls out while customers keep buying, a killed service pod comes back and the saga
//! finishes, the leader operator pod dies and the other takes over, a scale-up, and deletion
//! under `deletionPolicy: Delete`.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{Namespace, Pod, Secret, Service},
    networking::v1::Ingress,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use storefront_operator::{crd::Storefront, storage};
use support::{eventually, repository, var};

mod support;

const OPERATOR_NAMESPACE: &str = "storefront-system";
const RELEASE: &str = "storefront-operator";
const BACKENDS_NAMESPACE: &str = "storefront-data";
/// The example Storefront's namespace and name.
const SHOP: &str = "shop";
const SERVICES: [&str; 7] = [
    "auth",
    "products",
    "cart",
    "orders",
    "payments",
    "notifications",
    "web",
];

/// An error with its causes: reqwest's own text ("error sending request") leaves out whether
/// the connection was refused, reset or timed out.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn step(what: &str, since: Instant) {
    eprintln!("[{:>6.1} s] {what}", since.elapsed().as_secs_f64());
}

/// The cluster: an API client, and kubectl and helm with its kubeconfig.
struct Cluster {
    client: Client,
    kubeconfig: String,
}

impl Cluster {
    async fn connect() -> Cluster {
        let kubeconfig = var("STOREFRONT_TEST_CLUSTER_KUBECONFIG");
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        Cluster {
            client: Client::try_from(config).unwrap(),
            kubeconfig,
        }
    }

    fn command(&self, program: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let mut child = Command::new(var(program))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repository())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// `kubectl ARGS`, which must succeed.
    fn kubectl(&self, args: &[&str]) -> String {
        let (ok, text) = self.command("STOREFRONT_TEST_KUBECTL", args, None);
        assert!(ok, "kubectl {args:?} failed:\n{text}");
        text
    }

    fn kubectl_apply(&self, yaml: &str) {
        let (ok, text) = self.command("STOREFRONT_TEST_KUBECTL", &["apply", "-f", "-"], Some(yaml));
        assert!(ok, "kubectl apply failed:\n{text}");
    }

    fn helm(&self, args: &[&str]) -> (bool, String) {
        self.command("STOREFRONT_TEST_HELM", args, None)
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// What earlier runs may have left: the release, the Storefront (its finalizer dropped, as no
    /// operator may be left to remove it) and the three namespaces.
    async fn clean(&self) {
        let _ = self.helm(&["uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait"]);
        let storefronts: Api<Storefront> = self.api(SHOP);
        if let Ok(list) = storefronts.list(&ListParams::default()).await {
            for storefront in list {
                let _ = storefronts
                    .patch(
                        &storefront.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
                    )
                    .await;
            }
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for namespace in [SHOP, BACKENDS_NAMESPACE, OPERATOR_NAMESPACE] {
            let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
        }
        eventually(180, "leftover namespaces are gone", || async {
            let mut left = Vec::new();
            for namespace in [SHOP, BACKENDS_NAMESPACE, OPERATOR_NAMESPACE] {
                if namespaces.get_opt(namespace).await.unwrap().is_some() {
                    left.push(namespace);
                }
            }
            left.is_empty().then_some(()).ok_or(format!("{left:?}"))
        })
        .await;
    }

    /// Every pod of `namespace` (with `selector`) Running and Ready, and at least `at_least`.
    async fn pods_ready(
        &self,
        namespace: &str,
        selector: &str,
        at_least: usize,
    ) -> Result<Vec<Pod>, String> {
        let pods: Api<Pod> = self.api(namespace);
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| e.to_string())?;
        let live: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let unready: Vec<String> = live
            .iter()
            .filter(|p| !pod_ready(p))
            .map(|p| {
                format!(
                    "{} {}",
                    p.name_any(),
                    p.status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default()
                )
            })
            .collect();
        if live.len() < at_least || !unready.is_empty() {
            return Err(format!(
                "{} of {at_least} pods; not ready: {unready:?}",
                live.len()
            ));
        }
        Ok(live)
    }

    /// The operator's pods never met a refusal of the API server: the chart's RBAC covers every
    /// read, watch and write the operator makes.
    fn operator_was_allowed_everything(&self) {
        let logs = self.kubectl(&[
            "logs",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--selector",
            "app.kubernetes.io/name=storefront-operator",
            "--tail=-1",
        ]);
        let refused: Vec<&str> = logs.lines().filter(|l| l.contains("forbidden")).collect();
        assert!(
            refused.is_empty(),
            "the operator was refused:\n{}",
            refused.join("\n")
        );
    }

    /// The cluster IP of Service `name`.
    async fn service_url(&self, namespace: &str, name: &str, port: u16) -> String {
        let services: Api<Service> = self.api(namespace);
        let service = services.get(name).await.unwrap();
        let ip = service.spec.unwrap().cluster_ip.unwrap();
        format!("http://{ip}:{port}")
    }

    async fn storefront(&self) -> Storefront {
        self.api::<Storefront>(SHOP).get(SHOP).await.unwrap()
    }

    async fn patch_storefront(&self, patch: Value) {
        self.api::<Storefront>(SHOP)
            .patch(SHOP, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    /// Every Deployment of the shop rolled out: the template's image tag everywhere, all
    /// replicas updated, available, and no old pod left.
    async fn rolled_out(&self, tag: &str) -> Result<(), String> {
        let deployments: Api<Deployment> = self.api(SHOP);
        for service in SERVICES {
            let name = format!("{SHOP}-{service}");
            let deployment = deployments.get(&name).await.map_err(|e| e.to_string())?;
            let wanted = deployment.spec.replicas.unwrap_or(1);
            let image = deployment
                .spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].image.clone())
                .unwrap_or_default();
            let status = deployment.status.clone().unwrap_or_default();
            let generation = deployment.metadata.generation.unwrap_or_default();
            let done = image.ends_with(&format!(":{tag}"))
                && status.observed_generation == Some(generation)
                && status.updated_replicas == Some(wanted)
                && status.available_replicas == Some(wanted)
                && status.replicas == Some(wanted);
            if !done {
                return Err(format!("{name}: {image}, {status:?}"));
            }
        }
        Ok(())
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The example Storefront as the manifest has it, with this build's images.
fn example_storefront(registry: &str, tag: &str) -> String {
    let text =
        std::fs::read_to_string(repository().join("manifests/example-storefront.yaml")).unwrap();
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let mut value = Value::deserialize(document).unwrap();
        if value["kind"] == "Storefront" {
            value["spec"]["image"] =
                json!({ "registry": registry, "tag": tag, "pullPolicy": "Never" });
        }
        documents.push(serde_yaml::to_string(&value).unwrap());
    }
    documents.join("---\n")
}

/// The shop's API and pages, by cluster IP.
#[derive(Clone)]
struct Shop {
    http: reqwest::Client,
    urls: BTreeMap<&'static str, String>,
    failures: Arc<AtomicUsize>,
}

/// A customer's session.
#[derive(Clone)]
struct Customer {
    shop: Shop,
    token: String,
}

impl Shop {
    async fn new(cluster: &Cluster) -> Shop {
        let mut urls = BTreeMap::new();
        for service in SERVICES {
            urls.insert(
                service,
                cluster
                    .service_url(SHOP, &format!("{SHOP}-{service}"), 8080)
                    .await,
            );
        }
        Shop {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            urls,
            failures: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// One request; a transport error or a 5xx counts as a failed request (and is answered as
    /// `None`), anything else is the service's answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> Option<(StatusCode, Value)> {
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_server_error() {
                    eprintln!("a request failed: {status} {:?}", response.url().path());
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                let path = response.url().path().to_owned();
                match response.bytes().await {
                    Ok(bytes) => Some((
                        status,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    )),
                    Err(e) => {
                        eprintln!("a response broke off: {path}: {e}");
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            }
            Err(e) => {
                eprintln!("a request failed: {}", chain(&e));
                self.failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn url(&self, service: &str, path: &str) -> String {
        format!("{}{path}", self.urls[service])
    }

    async fn sign_in(&self, email: &str, password: &str) -> Customer {
        let (status, body) = self
            .send(
                self.http
                    .post(self.url("auth", "/api/users/signin"))
                    .json(&json!({ "email": email, "password": password })),
            )
            .await
            .expect("auth answers");
        assert_eq!(status, 200, "sign-in of {email}: {body}");
        Customer {
            shop: self.clone(),
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn sign_up(&self, email: &str) -> Customer {
        let (status, body) = self
            .send(
                self.http
                    .post(self.url("auth", "/api/users/signup"))
                    .json(&json!({
                        "email": email, "password": "correct horse 9", "name": "Ada",
                    })),
            )
            .await
            .expect("auth answers");
        assert_eq!(status, 201, "sign-up: {body}");
        Customer {
            shop: self.clone(),
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }
}

impl Customer {
    fn request(
        &self,
        method: reqwest::Method,
        service: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.shop
            .http
            .request(method, self.shop.url(service, path))
            .bearer_auth(&self.token)
    }

    /// What a customer does between purchases: who am I, the product, the bell's history, the
    /// shop's page — one request to each service the saga does not use.
    async fn browse(&self, product: &str) {
        let shop = &self.shop;
        for request in [
            self.request(reqwest::Method::GET, "auth", "/api/users/currentuser"),
            shop.http
                .get(shop.url("products", &format!("/api/products/{product}"))),
            self.request(reqwest::Method::GET, "notifications", "/api/notifications"),
        ] {
            if let Some((status, body)) = shop.send(request).await {
                assert_eq!(status, 200, "{body}");
            }
        }
        let page = match shop.http.get(shop.url("web", "/")).send().await {
            Ok(page) if page.status() == 200 => {
                page.bytes().await.map(|_| ()).map_err(|e| e.to_string())
            }
            Ok(page) => Err(page.status().to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = page {
            eprintln!("the shop's page failed: {e}");
            shop.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds `product` to the cart, checks out and pays with the stand-in's test card; answers the
    /// order id once it is completed. `None` when a request failed on the way (counted).
    async fn buy(&self, product: &str, deadline: Duration) -> Option<String> {
        let until = Instant::now() + deadline;
        let id = self.place(product, until).await?;
        self.wait_state(&id, "awaiting_payment", until).await?;
        self.pay(&id, until).await?;
        self.wait_state(&id, "completed", until).await?;
        Some(id)
    }

    /// Adds `product` to the cart and checks out; answers the order's id.
    async fn place(&self, product: &str, until: Instant) -> Option<String> {
        // The cart learns of a new product from products' events, and orders keeps a replica of
        // its own which may learn of it a moment later: both "not sold here" (422) are retried
        // (a refused checkout leaves the lines in the cart).
        self.until_sold_here("add to cart", 200, until, || {
            self.request(reqwest::Method::POST, "cart", "/api/cart/items")
                .json(&json!({ "product_id": product, "quantity": 1 }))
        })
        .await?;
        let key = support::unique("checkout", '-');
        let order = self
            .until_sold_here("checkout", 201, until, || {
                self.request(reqwest::Method::POST, "cart", "/api/cart/checkout")
                    .header("idempotency-key", key.as_str())
            })
            .await?;
        Some(order["id"].as_str().unwrap().to_owned())
    }

    /// Sends what `request` makes until it answers `expected`, retrying 422 until `until`.
    async fn until_sold_here(
        &self,
        what: &str,
        expected: u16,
        until: Instant,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Option<Value> {
        loop {
            let (status, body) = self.shop.send(request()).await?;
            if status == expected {
                return Some(body);
            }
            assert!(
                status == 422 && Instant::now() < until,
                "{what}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Pays order `id` with the stand-in's test card (what Stripe.js gives the browser).
    async fn pay(&self, id: &str, until: Instant) -> Option<()> {
        loop {
            let (status, body) = self
                .shop
                .send(
                    self.request(reqwest::Method::POST, "payments", "/api/payments")
                        .json(&json!({ "order_id": id, "payment_method": "pm_card_visa" })),
                )
                .await?;
            let kind = body["type"].as_str().unwrap_or_default().to_owned();
            match status.as_u16() {
                200 => return Some(()),
                409 if kind.ends_with("already-paid") => return Some(()),
                // Held for another attempt that is with Stripe: it ends in a moment.
                409 if kind.ends_with("payment-in-progress") && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => panic!("paying {id}: {status} {body}"),
            }
        }
    }

    /// The state of order `id` (`None` when the request failed).
    async fn state(&self, id: &str) -> Option<String> {
        let (status, order) = self
            .shop
            .send(self.request(reqwest::Method::GET, "orders", &format!("/api/orders/{id}")))
            .await?;
        assert_eq!(status, 200, "order {id}: {order}");
        Some(order["state"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until order `id` is in `state`.
    async fn wait_state(&self, id: &str, state: &str, until: Instant) -> Option<()> {
        loop {
            let now = self.state(id).await?;
            if now == state {
                return Some(());
            }
            assert!(
                now != "cancelled" && Instant::now() < until,
                "order {id} is {now} (waiting for {state})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The shop's first administrator, from the Secret the operator generated.
async fn admin(cluster: &Cluster) -> (String, String) {
    let secret = cluster
        .api::<Secret>(SHOP)
        .get(&format!("{SHOP}-admin"))
        .await
        .unwrap();
    let data = secret.data.unwrap();
    let field = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
    (field("email"), field("password"))
}

/// A product with plenty of stock, made by the shop's administrator through the API.
async fn product(shop: &Shop, admin: &Customer) -> String {
    let (status, body) = shop
        .send(
            admin
                .request(reqwest::Method::POST, "products", "/api/products")
                .json(&json!({
                    "title": "Cluster mug",
                    "description": "Bought on a real Kubernetes cluster",
                    "category": "kitchen",
                    "price": { "amount": 1500, "currency": "USD" },
                    "stock": 1000,
                })),
        )
        .await
        .expect("products answers");
    assert_eq!(status, 201, "create a product: {body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shop_from_helm_and_one_storefront_sells_and_survives_day_two() {
    let registry = var("STOREFRONT_TEST_CLUSTER_REGISTRY");
    let tag = var("STOREFRONT_TEST_CLUSTER_TAG");
    let next_tag = var("STOREFRONT_TEST_CLUSTER_NEXT_TAG");
    let cluster = Cluster::connect().await;
    let start = Instant::now();
    cluster.clean().await;
    step("clean cluster", start);

    // 1. The operator, from the chart, under the chart's ServiceAccount and RBAC.
    let (ok, text) = cluster.helm(&[
        "install",
        RELEASE,
        "charts/storefront-operator",
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--set",
        &format!("image.repository={registry}/storefront-operator"),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        "image.pullPolicy=Never",
    ]);
    assert!(ok, "helm install failed:\n{text}");
    let operators = eventually(120, "two operator pods Ready", || {
        cluster.pods_ready(
            OPERATOR_NAMESPACE,
            "app.kubernetes.io/name=storefront-operator",
            2,
        )
    })
    .await;
    for pod in &operators {
        assert_eq!(
            pod.spec.as_ref().unwrap().service_account_name.as_deref(),
            Some(RELEASE),
            "the operator runs under the chart's ServiceAccount"
        );
    }
    step("operator installed with helm, 2 replicas Ready", start);

    // 2. The development backends.
    cluster.kubectl(&["apply", "-f", "manifests/dev-backends-local.yaml"]);
    eventually(180, "the backends Ready", || {
        cluster.pods_ready(BACKENDS_NAMESPACE, "app", 5)
    })
    .await;
    step("development backends Ready", start);

    // 3. The Storefront, as the example has it, with this build's images.
    let applied = Instant::now();
    cluster.kubectl_apply(&example_storefront(&registry, &tag));
    eventually(300, "the Storefront Ready", || async {
        let storefront = cluster.storefront().await;
        let status = storefront.status.clone().unwrap_or_default();
        let conditions: Vec<(String, String)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect();
        let all_true = conditions.len() >= 5 && conditions.iter().all(|(_, s)| s == "True");
        all_true
            .then_some(())
            .ok_or(format!("{conditions:?} {:?}", status.phase))
    })
    .await;
    let ready_in = applied.elapsed();
    let (_, printed) = cluster.command(
        "STOREFRONT_TEST_KUBECTL",
        &[
            "get",
            "sf",
            "-n",
            SHOP,
            SHOP,
            "-o",
            "jsonpath={.status.phase} {.status.readyServices}",
        ],
        None,
    );
    assert_eq!(printed.trim(), "Ready 7/7", "kubectl get sf shows it Ready");
    eventually(60, "every shop pod Ready", || {
        cluster.pods_ready(SHOP, "app.kubernetes.io/instance=shop", 7)
    })
    .await;
    step(
        &format!(
            "Storefront Ready {:.1} s after kubectl apply",
            ready_in.as_secs_f64()
        ),
        start,
    );
    cluster.operator_was_allowed_everything();

    // A Ready pod is not yet reachable through its Service: the endpoint reaches kube-proxy's
    // rules a moment later, and until then a connection to the ClusterIP is refused (a CI run
    // failed its first cart request that way). Wait for each Service to answer, and report it.
    let shop = Shop::new(&cluster).await;
    eventually(
        60,
        "every Service answers through its ClusterIP",
        || async {
            let mut unreachable = Vec::new();
            for service in SERVICES {
                let answer = shop.http.get(shop.url(service, "/readyz")).send().await;
                if !answer.is_ok_and(|r| r.status().is_success()) {
                    unreachable.push(service);
                }
            }
            unreachable
                .is_empty()
                .then_some(())
                .ok_or(format!("not yet: {unreachable:?}"))
        },
    )
    .await;
    step(
        &format!(
            "every Service routes to its pods {:.1} s after kubectl apply",
            applied.elapsed().as_secs_f64()
        ),
        start,
    );

    // The Ingress routes (no controller here to serve them).
    let ingress = cluster
        .api::<Ingress>(SHOP)
        .get("shop-ingress")
        .await
        .unwrap();
    let rule = &ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("shop.localtest.me"));
    let routes: BTreeMap<String, String> = rule
        .http
        .as_ref()
        .unwrap()
        .paths
        .iter()
        .map(|p| {
            (
                p.path.clone().unwrap_or_default(),
                p.backend.service.as_ref().unwrap().name.clone(),
            )
        })
        .collect();
    for (path, service) in [
        ("/api/users", "shop-auth"),
        ("/api/products", "shop-products"),
        ("/api/cart", "shop-cart"),
        ("/api/orders", "shop-orders"),
        ("/api/payments", "shop-payments"),
        ("/api/notifications", "shop-notifications"),
        ("/ws/notifications", "shop-notifications"),
        ("/", "shop-web"),
    ] {
        assert_eq!(
            routes.get(path).map(String::as_str),
            Some(service),
            "route {path}: {routes:?}"
        );
    }

    // 4. A customer buys, through the cluster network.
    let (email, password) = admin(&cluster).await;
    let administrator = shop.sign_in(&email, &password).await;
    let mug = product(&shop, &administrator).await;
    let customer = shop
        .sign_up(&support::unique("ada", '-').add_domain())
        .await;
    let first = customer
        .buy(&mug, Duration::from_secs(120))
        .await
        .expect("no request fails");
    let paid_in = applied.elapsed();
    step(
        &format!(
            "first order paid {:.1} s after kubectl apply",
            paid_in.as_secs_f64()
        ),
        start,
    );
    let notifications = eventually(30, "the order-completed notification", || async {
        let (_, body) = shop
            .send(customer.request(reqwest::Method::GET, "notifications", "/api/notifications"))
            .await
            .ok_or("notifications failed")?;
        let found = body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["kind"] == "order-completed" && n["order_id"] == first.as_str());
        found.then_some(body.clone()).ok_or(body.to_string())
    })
    .await;
    assert!(
        notifications["unread"].as_u64().unwrap_or(0) >= 1,
        "{notifications}"
    );
    let page = shop.http.get(shop.url("web", "/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text().await.unwrap().contains("Cluster mug"),
        "the shop's page lists the product"
    );
    eprintln!(
        "FIGURES apply_to_ready_s={:.1} apply_to_first_paid_order_s={:.1}",
        ready_in.as_secs_f64(),
        paid_in.as_secs_f64()
    );
    // `cargo xtask bench cluster` also wants each pod's cost at rest.
    if let Ok(seconds) = std::env::var("STOREFRONT_BENCH_IDLE_SECS") {
        idle_figures(&cluster, Duration::from_secs(seconds.parse().unwrap())).await;
    }

    // 5. Day two: a new image tag rolls out while customers keep buying, with no failed request.
    let buying = Arc::new(AtomicBool::new(true));
    let mut buyers = Vec::new();
    for _ in 0..2 {
        let customer = shop
            .sign_up(&support::unique("buyer", '-').add_domain())
            .await;
        let (buying, mug) = (buying.clone(), mug.clone());
        buyers.push(tokio::spawn(async move {
            let mut bought = 0;
            while buying.load(Ordering::Relaxed) {
                // Every service answers this customer in each round, not only the saga's.
                customer.browse(&mug).await;
                if customer.buy(&mug, Duration::from_secs(180)).await.is_some() {
                    bought += 1;
                }
            }
            bought
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rollout = Instant::now();
    cluster
        .patch_storefront(json!({ "spec": { "image": { "tag": next_tag } } }))
        .await;
    eventually(300, "the new tag rolled out", || {
        cluster.rolled_out(&next_tag)
    })
    .await;
    let rollout_took = rollout.elapsed();
    // Until the last old pod has drained and stopped: its end is under load too.
    eventually(120, "the old pods gone", || async {
        let pods = cluster
            .api::<Pod>(SHOP)
            .list(&ListParams::default().labels("app.kubernetes.io/instance=shop"))
            .await
            .map_err(|e| e.to_string())?;
        let stopping: Vec<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .map(|p| p.name_any())
            .collect();
        stopping
            .is_empty()
            .then_some(())
            .ok_or(format!("{stopping:?}"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    buying.store(false, Ordering::Relaxed);
    let mut bought = 0;
    for buyer in buyers {
        bought += buyer.await.unwrap();
    }
    assert_eq!(
        shop.failures.load(Ordering::Relaxed),
        0,
        "no request failed during the rollout"
    );
    assert!(
        bought >= 2,
        "customers kept buying during the rollout ({bought} orders)"
    );
    step(
        &format!(
            "tag {next_tag} rolled out in {:.1} s; {bought} orders completed meanwhile, 0 failed requests",
            rollout_took.as_secs_f64()
        ),
        start,
    );

    // A killed service pod comes back, and the saga finishes: products dies as a customer checks
    // out, so the order waits for its stock in Kafka; once products is back it reserves the
    // stock, and the order is paid and completed (products' own requests fail while it is down:
    // not counted from here on).
    let pods: Api<Pod> = cluster.api(SHOP);
    let products = "app.kubernetes.io/instance=shop,app.kubernetes.io/component=products";
    let killed = cluster.pods_ready(SHOP, products, 1).await.unwrap()[0].name_any();
    let buyer = shop
        .sign_up(&support::unique("survivor", '-').add_domain())
        .await;
    let until = Instant::now() + Duration::from_secs(180);
    pods.delete(
        &killed,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    let order = buyer
        .place(&mug, until)
        .await
        .expect("cart and orders answer");
    buyer
        .wait_state(&order, "awaiting_payment", until)
        .await
        .expect("orders answers");
    buyer.pay(&order, until).await.expect("payments answers");
    buyer
        .wait_state(&order, "completed", until)
        .await
        .expect("orders answers");
    let back = eventually(120, "products back", || {
        cluster.pods_ready(SHOP, products, 1)
    })
    .await;
    assert!(back.iter().all(|p| p.name_any() != killed));
    step(
        "products killed as the customer checked out: back, and the order completed",
        start,
    );

    // The leader operator pod dies; the other takes the Lease and reconciles.
    let leases: Api<Lease> = cluster.api(OPERATOR_NAMESPACE);
    let holder = |lease: Lease| {
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    };
    let leader = holder(leases.get(RELEASE).await.unwrap());
    assert!(
        operators.iter().any(|p| p.name_any() == leader),
        "a replica leads: {leader}"
    );
    let operator_pods: Api<Pod> = cluster.api(OPERATOR_NAMESPACE);
    operator_pods
        .delete(
            &leader,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    let successor = eventually(90, "another replica leads", || async {
        let now = holder(leases.get(RELEASE).await.map_err(|e| e.to_string())?);
        (!now.is_empty() && now != leader)
            .then_some(now.clone())
            .ok_or(now)
    })
    .await;
    let services: Api<Service> = cluster.api(SHOP);
    let cart_uid = services.get("shop-cart").await.unwrap().uid();
    services
        .delete("shop-cart", &DeleteParams::default())
        .await
        .unwrap();
    eventually(60, "the new leader heals a deleted Service", || async {
        match services
            .get_opt("shop-cart")
            .await
            .map_err(|e| e.to_string())?
        {
            Some(service) if service.uid() != cart_uid => Ok(()),
            other => Err(format!("{:?}", other.map(|s| s.uid()))),
        }
    })
    .await;
    step(
        &format!("leader {leader} killed; {successor} took over and healed a deleted Service"),
        start,
    );

    // A spec change scales a service.
    cluster
        .patch_storefront(json!({ "spec": { "services": { "cart": { "replicas": 2 } } } }))
        .await;
    eventually(120, "two cart pods Ready", || {
        cluster.pods_ready(
            SHOP,
            "app.kubernetes.io/instance=shop,app.kubernetes.io/component=cart",
            2,
        )
    })
    .await;
    step("cart scaled to 2 pods", start);

    // kubectl delete sf: deletionPolicy Delete removes the shop, its databases and its bucket.
    let mongodb = cluster
        .service_url(BACKENDS_NAMESPACE, "mongodb", 27017)
        .await;
    let s3 = cluster.service_url(BACKENDS_NAMESPACE, "minio", 9000).await;
    let databases = || async {
        let uri = format!(
            "{}/?directConnection=true",
            mongodb.replace("http://", "mongodb://")
        );
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        client
            .list_database_names()
            .await
            .unwrap()
            .into_iter()
            .filter(|name| name.starts_with("shop_shop_"))
            .collect::<Vec<_>>()
    };
    assert_eq!(databases().await.len(), 6, "a database per service but web");
    cluster.kubectl(&["delete", "sf", SHOP, "-n", SHOP, "--timeout=120s"]);
    eventually(120, "the shop's objects collected", || async {
        let left = cluster
            .api::<Deployment>(SHOP)
            .list(&ListParams::default().labels("app.kubernetes.io/instance=shop"))
            .await
            .map_err(|e| e.to_string())?;
        left.items
            .is_empty()
            .then_some(())
            .ok_or(format!("{} Deployments", left.items.len()))
    })
    .await;
    assert_eq!(
        databases().await,
        Vec::<String>::new(),
        "the databases are dropped"
    );
    let credentials = storage::Credentials {
        access_key: "storefront-dev".into(),
        secret_key: "storefront-dev-secret".into(),
    };
    assert!(
        !storage::bucket_exists(&s3, &credentials, "shop-images")
            .await
            .unwrap(),
        "the bucket is removed"
    );
    step(
        "kubectl delete sf removed the shop, its databases and its bucket",
        start,
    );
    cluster.operator_was_allowed_everything();

    cluster.clean().await;
    step("cleaned up", start);
}

/// Each pod's CPU and memory at rest over `period` (the kubelet's summary API, what
/// metrics-server reads), beside its requests and limits; printed as `FIGURES` lines for
/// `cargo xtask bench cluster`.
async fn idle_figures(cluster: &Cluster, period: Duration) {
    let summary = || async {
        let request = http::Request::get("/api/v1/nodes/storefront/proxy/stats/summary")
            .body(Vec::new())
            .unwrap();
        cluster.client.request::<Value>(request).await.unwrap()
    };
    // Per pod: (CPU core-nanoseconds so far, RSS bytes, working-set bytes).
    let usage = |summary: &Value| -> BTreeMap<String, (f64, f64, f64)> {
        summary["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|pod| {
                let name = format!(
                    "{}/{}",
                    pod["podRef"]["namespace"].as_str().unwrap_or_default(),
                    pod["podRef"]["name"].as_str().unwrap_or_default()
                );
                let total = |field: &str, key: &str| {
                    pod["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| c[field][key].as_f64().unwrap_or(0.0))
                        .sum::<f64>()
                };
                (
                    name,
                    (
                        total("cpu", "usageCoreNanoSeconds"),
                        total("memory", "rssBytes"),
                        total("memory", "workingSetBytes"),
                    ),
                )
            })
            .collect()
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = usage(&summary().await);
    tokio::time::sleep(period).await;
    let after = usage(&summary().await);
    let mut fleet = [0.0f64; 6];
    for namespace in [SHOP, OPERATOR_NAMESPACE, BACKENDS_NAMESPACE] {
        let pods = cluster
            .api::<Pod>(namespace)
            .list(&ListParams::default())
            .await
            .unwrap();
        for pod in pods {
            let name = format!("{namespace}/{}", pod.name_any());
            let (Some(start), Some(end)) = (before.get(&name), after.get(&name)) else {
                continue;
            };
            let millicores = (end.0 - start.0) / period.as_secs_f64() / 1e6;
            // The kubelet of 1.20 reports no RSS on cgroup v1: the pod's processes' own.
            let rss = pod_rss_bytes(&pod.uid().unwrap_or_default());
            let mut resources = [0.0f64; 4];
            for container in &pod.spec.as_ref().unwrap().containers {
                let r = container.resources.clone().unwrap_or_default();
                let get = |map: &Option<
                    BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                >,
                           key: &str| {
                    map.as_ref()
                        .and_then(|m| m.get(key))
                        .map_or(0.0, |q| quantity(&q.0))
                };
                resources[0] += get(&r.requests, "cpu") * 1000.0;
                resources[1] += get(&r.requests, "memory") / 1048576.0;
                resources[2] += get(&r.limits, "cpu") * 1000.0;
                resources[3] += get(&r.limits, "memory") / 1048576.0;
            }
            eprintln!(
                "FIGURES pod={name} idle_cpu_millicores={millicores:.1} rss_mib={:.1} working_set_mib={:.1} \
                 request_cpu_m={:.0} request_memory_mib={:.0} limit_cpu_m={:.0} limit_memory_mib={:.0}",
                rss / 1048576.0,
                end.2 / 1048576.0,
                resources[0],
                resources[1],
                resources[2],
                resources[3],
            );
            if namespace != BACKENDS_NAMESPACE {
                let values = [
                    millicores,
                    rss / 1048576.0,
                    resources[0],
                    resources[1],
                    resources[2],
                    resources[3],
                ];
                for (sum, value) in fleet.iter_mut().zip(values) {
                    *sum += value;
                }
            }
        }
    }
    eprintln!(
        "FIGURES fleet=shop+operator idle_cpu_millicores={:.1} rss_mib={:.1} request_cpu_m={:.0} \
         request_memory_mib={:.0} limit_cpu_m={:.0} limit_memory_mib={:.0}",
        fleet[0], fleet[1], fleet[2], fleet[3], fleet[4], fleet[5]
    );
}

/// The resident memory of every process of the pod `uid`: the processes listed in its memory
/// cgroup (cgroup v1, the kubelet's cgroupfs layout `kubepods/[qos/]pod{uid}/…`), each one's VmRSS.
fn pod_rss_bytes(uid: &str) -> f64 {
    fn find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if entry.file_name() == name {
                return Some(path);
            }
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        }
        None
    }
    fn pids(dir: &std::path::Path, into: &mut Vec<String>) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            into.extend(text.lines().map(str::to_owned));
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pids(&entry.path(), into);
            }
        }
    }
    let root = std::path::Path::new("/sys/fs/cgroup/memory/kubepods");
    let Some(pod) = find(root, &format!("pod{uid}")) else {
        return 0.0;
    };
    let mut all = Vec::new();
    pids(&pod, &mut all);
    all.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib * 1024.0)
        .sum()
}

/// A Kubernetes quantity ("50m", "2", "64Mi", "1Gi", "500M") as a number of units.
fn quantity(text: &str) -> f64 {
    let suffixes = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().unwrap_or(0.0) * factor;
        }
    }
    text.parse().unwrap_or(0.0)
}

trait Domain {
    fn add_domain(self) -> String;
}

impl Domain for String {
    /// A unique label made into an e-mail address.
    fn add_domain(self) -> String {
        format!("{self}@example.com")
    }
}
