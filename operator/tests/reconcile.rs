//! The reconcile, call by call, against a fake API server on kube's tower-test mock service
//! (controller-rs's fixtures, grown into a small in-memory API server so each scenario can count
//! the writes it caused).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Method, Request, Response, StatusCode};
use kube::{Client, Resource, ResourceExt, client::Body, runtime::controller::Action};
use serde_json::{Value, json};
use storefront_operator::{
    controller::{Context, FINALIZER, error_policy, reconcile},
    crd::Storefront,
};
use support::var;
use tower_test::mock::{self, Handle};

mod support;

const STOREFRONT: &str = "/apis/storefront.dev/v1alpha1/namespaces/prod/storefronts/shop";
const SIGNING_KEY: &str = "/api/v1/namespaces/prod/secrets/shop-jwt";
const ADMIN: &str = "/api/v1/namespaces/prod/secrets/shop-admin";
const CREDENTIALS: &str = "/api/v1/namespaces/prod/secrets/minio-credentials";
const MONGODB_ADMIN: &str = "/api/v1/namespaces/prod/secrets/mongodb-admin";
/// The services with a database.
const DATABASES: [&str; 6] = [
    "auth",
    "products",
    "cart",
    "orders",
    "payments",
    "notifications",
];

#[derive(Default)]
struct State {
    /// Objects by their API path.
    objects: BTreeMap<String, Value>,
    /// Every write: (method, path).
    writes: Vec<(String, String)>,
    /// Answer 500 to every read (an API server in trouble).
    failing: bool,
    /// Answer 500 to the reads of paths that contain this (one kind of object refused).
    failing_on: Option<&'static str>,
    version: u64,
}

fn status(code: StatusCode, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code.as_u16(),
    })
}

impl State {
    fn answer(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        kind: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        if *method == Method::GET {
            if self.failing || self.failing_on.is_some_and(|part| path.contains(part)) {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
                );
            }
            if query.contains("labelSelector") {
                let depth = path.matches('/').count() + 1;
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(p, _)| {
                        p.starts_with(&format!("{path}/")) && p.matches('/').count() == depth
                    })
                    .map(|(_, o)| o.clone())
                    .collect();
                return (
                    StatusCode::OK,
                    json!({ "apiVersion": "v1", "kind": "List", "metadata": {}, "items": items }),
                );
            }
            return match self.objects.get(path) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => (
                    StatusCode::NOT_FOUND,
                    status(StatusCode::NOT_FOUND, "NotFound"),
                ),
            };
        }
        self.version += 1;
        if *method == Method::POST {
            let mut object: Value = serde_json::from_slice(body).unwrap();
            let item = format!("{path}/{}", object["metadata"]["name"].as_str().unwrap());
            if self.objects.contains_key(&item) {
                return (
                    StatusCode::CONFLICT,
                    status(StatusCode::CONFLICT, "AlreadyExists"),
                );
            }
            self.writes.push((method.to_string(), item.clone()));
            object["metadata"]["resourceVersion"] = json!(self.version.to_string());
            self.objects.insert(item, object.clone());
            return (StatusCode::CREATED, object);
        }
        self.writes.push((method.to_string(), path.to_owned()));
        if *method == Method::DELETE {
            self.objects.remove(path);
            return (
                StatusCode::OK,
                json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" }),
            );
        }
        assert_eq!(*method, Method::PATCH, "{path}");
        let patch: Value = serde_json::from_slice(body).unwrap();
        if let Some(parent) = path.strip_suffix("/status") {
            let object = self
                .objects
                .get_mut(parent)
                .expect("status of an existing object");
            object["status"] = patch["status"].clone();
            return (StatusCode::OK, object.clone());
        }
        if kind.starts_with("application/json-patch") {
            let object = self
                .objects
                .get_mut(path)
                .expect("json-patch of an existing object");
            // Like the API server, a `test` for null passes on a field that is not there.
            let ops: Vec<Value> = patch
                .as_array()
                .unwrap()
                .iter()
                .filter(|op| {
                    !(op["op"] == "test"
                        && op["value"].is_null()
                        && object.pointer(op["path"].as_str().unwrap()).is_none())
                })
                .cloned()
                .collect();
            let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
            json_patch::patch(object, &ops).unwrap();
            return (StatusCode::OK, object.clone());
        }
        assert!(kind.starts_with("application/apply-patch"), "{kind}");
        let mut object = patch;
        // What the API server keeps of a live object: its status.
        if let Some(live) = self.objects.get(path) {
            object["status"] = live["status"].clone();
        }
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        object["metadata"]["uid"] = json!(format!("uid-{}", self.version));
        self.objects.insert(path.to_owned(), object.clone());
        (StatusCode::OK, object)
    }
}

async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, state: Arc<Mutex<State>>) {
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let kind = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = request.into_body().collect_bytes().await.unwrap();
        let (code, answer) = state
            .lock()
            .unwrap()
            .answer(&method, &path, &query, &kind, &body);
        send.send_response(
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
}

struct Fake {
    ctx: Arc<Context>,
    state: Arc<Mutex<State>>,
}

/// The test stack's broker: the reconcile makes the shop's topics on a real Kafka.
fn kafka() -> String {
    var("STOREFRONT_TEST_KAFKA_BOOTSTRAP")
}

fn spec() -> Value {
    json!({
        "host": "shop.example.com",
        "kafka": { "bootstrapServers": kafka() },
        // The test stack's MongoDB that demands authentication, with the admin string below.
        "mongodb": { "mode": "external", "uriSecret": { "name": "mongodb-admin", "key": "uri" } },
        "objectStorage": {
            // The test stack's S3, with the keys from the Secret below.
            "endpoint": var("STOREFRONT_TEST_S3_ENDPOINT"),
            "bucket": "shop-images",
            "credentialsSecret": "minio-credentials",
        },
        "redis": { "url": "redis://redis.data:6379" },
        "payments": { "stripeSecret": "stripe" },
    })
}

impl Fake {
    fn new(spec: Value) -> Fake {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(serve(handle, state.clone()));
        state.lock().unwrap().objects.insert(
            STOREFRONT.into(),
            json!({
                "apiVersion": "storefront.dev/v1alpha1",
                "kind": "Storefront",
                "metadata": { "name": "shop", "namespace": "prod", "uid": "sf-uid", "generation": 1 },
                "spec": spec,
            }),
        );
        let encode = |name: &str| {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, var(name))
        };
        state.lock().unwrap().objects.insert(
            CREDENTIALS.into(),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "minio-credentials", "namespace": "prod" },
                "data": {
                    "accessKey": encode("STOREFRONT_TEST_S3_ACCESS_KEY"),
                    "secretKey": encode("STOREFRONT_TEST_S3_SECRET_KEY"),
                },
            }),
        );
        state.lock().unwrap().objects.insert(
            MONGODB_ADMIN.into(),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "mongodb-admin", "namespace": "prod" },
                "data": { "uri": encode("STOREFRONT_TEST_MONGODB_ADMIN_URI") },
            }),
        );
        Fake {
            ctx: Context::new(Client::new(service, "default")),
            state,
        }
    }

    fn storefront(&self) -> Storefront {
        serde_json::from_value(self.state.lock().unwrap().objects[STOREFRONT].clone()).unwrap()
    }

    /// Changes the Storefront as a user would (the API server bumps the generation on spec changes).
    fn edit(&self, change: impl FnOnce(&mut Value)) {
        let mut state = self.state.lock().unwrap();
        let object = state.objects.get_mut(STOREFRONT).unwrap();
        change(object);
        let generation = object["metadata"]["generation"].as_i64().unwrap();
        object["metadata"]["generation"] = json!(generation + 1);
    }

    async fn reconcile(&self) -> Result<Action, storefront_operator::controller::Error> {
        reconcile(Arc::new(self.storefront()), self.ctx.clone()).await
    }

    /// The writes since the last call.
    fn writes(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.state.lock().unwrap().writes)
    }

    fn object(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    fn condition(&self, kind: &str) -> Value {
        let storefront = self.object(STOREFRONT).unwrap();
        storefront["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} condition"))
    }

    /// A fresh shop taken through its first two reconciles (finalizer, then the children).
    async fn created(spec: Value) -> Fake {
        let fake = Fake::new(spec);
        fake.reconcile().await.unwrap();
        fake.reconcile().await.unwrap();
        fake.writes();
        fake
    }

    /// Every Deployment reports its replicas ready, as the kubelets would.
    fn deployments_ready(&self) {
        let mut state = self.state.lock().unwrap();
        for (path, object) in state.objects.iter_mut() {
            if path.contains("/deployments/") {
                let replicas = object["spec"]["replicas"].clone();
                object["status"] = json!({ "replicas": replicas, "readyReplicas": replicas });
            }
        }
    }
}

fn database_secret(service: &str) -> String {
    format!("/api/v1/namespaces/prod/secrets/shop-{service}-mongodb")
}

fn decode(value: &Value) -> String {
    String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            value.as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap()
}

fn deployment(service: &str) -> String {
    format!("/apis/apps/v1/namespaces/prod/deployments/shop-{service}")
}

fn budget(service: &str) -> String {
    format!("/apis/policy/v1/namespaces/prod/poddisruptionbudgets/shop-{service}")
}

#[tokio::test]
async fn first_the_finalizer_then_every_child_owned_by_the_storefront() {
    let fake = Fake::new(spec());
    assert_eq!(fake.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(fake.writes(), [("PATCH".to_owned(), STOREFRONT.to_owned())]);
    assert_eq!(fake.storefront().finalizers(), [FINALIZER]);

    fake.reconcile().await.unwrap();
    let writes = fake.writes();
    let children: Vec<&str> = writes
        .iter()
        .map(|(_, path)| path.as_str())
        .filter(|p| *p != format!("{STOREFRONT}/status"))
        .collect();
    // auth's signing key and the first administrator (created), the ConfigMap, 7 Deployments,
    // 7 Services, 7 NetworkPolicies and the two Ingresses (applied; one replica each, so no
    // budgets), 6 database Secrets; then the status.
    assert_eq!(children.len(), 32, "{children:#?}");
    assert_eq!(writes[0], ("POST".to_owned(), SIGNING_KEY.to_owned()));
    assert_eq!(writes[1], ("POST".to_owned(), ADMIN.to_owned()));
    assert_eq!(writes.last().unwrap().1, format!("{STOREFRONT}/status"));
    for path in children {
        let child = fake.object(path).unwrap();
        let owner = &child["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Storefront", "{path}");
        assert_eq!(owner["uid"], "sf-uid", "{path}");
        assert_eq!(owner["controller"], true, "{path}");
        if path != SIGNING_KEY && path != ADMIN {
            assert!(child["metadata"]["annotations"]["storefront.dev/desired-hash"].is_string());
        }
    }
    let admin = fake.object(ADMIN).unwrap();
    assert_eq!(decode(&admin["data"]["email"]), "admin@shop.example.com");
    assert_eq!(decode(&admin["data"]["password"]).len(), 64);
    let key = fake.object(SIGNING_KEY).unwrap()["data"]["signing-key.pem"].clone();
    let pem = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            key.as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let status = fake.storefront().status.unwrap();
    assert_eq!(status.url.as_deref(), Some("http://shop.example.com"));
    assert_eq!(status.ready_services.as_deref(), Some("0/7"));
    assert_eq!(status.observed_generation, Some(1));
    let available = fake.condition("ServicesAvailable");
    assert_eq!(available["status"], "False");
    assert!(
        available["message"]
            .as_str()
            .unwrap()
            .starts_with("waiting for auth (0/1 ready)"),
        "{available}"
    );
    let kafka = fake.condition("KafkaReady");
    assert_eq!(kafka["status"], "True", "{kafka}");
    assert_eq!(kafka["message"], "6 topics with at least 3 partitions");
    let databases = fake.condition("DatabasesReady");
    assert_eq!(databases["status"], "True", "{databases}");
    assert_eq!(
        databases["message"],
        "databases prod_shop_auth, prod_shop_products, prod_shop_cart, prod_shop_orders, \
         prod_shop_payments, prod_shop_notifications with their users"
    );
    for service in DATABASES {
        let secret = fake.object(&database_secret(service)).unwrap();
        let uri = decode(&secret["data"]["uri"]);
        assert!(uri.starts_with(&format!("mongodb://{service}:")), "{uri}");
        assert!(
            uri.contains(&format!("/prod_shop_{service}?"))
                && uri.ends_with(&format!("authSource=prod_shop_{service}")),
            "{uri}"
        );
        assert_eq!(decode(&secret["data"]["password"]).len(), 64);
    }
    let storage = fake.condition("StorageReady");
    assert_eq!(storage["status"], "True", "{storage}");
    assert_eq!(storage["message"], "bucket shop-images exists");
}

#[tokio::test]
async fn missing_storage_credentials_are_named_in_the_status() {
    let fake = Fake::new(spec());
    fake.state.lock().unwrap().objects.remove(CREDENTIALS);
    fake.reconcile().await.unwrap();
    fake.reconcile().await.unwrap();
    let storage = fake.condition("StorageReady");
    assert_eq!(storage["status"], "False");
    assert_eq!(storage["reason"], "CredentialsMissing");
    assert_eq!(storage["message"], "secret minio-credentials: not found");
    fake.deployments_ready();
    fake.reconcile().await.unwrap();
    let ready = fake.condition("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(
        ready["message"],
        "waiting for the image bucket (see StorageReady)"
    );
}

#[tokio::test]
async fn a_missing_mongodb_admin_secret_is_named_and_no_database_secret_is_written() {
    let fake = Fake::new(spec());
    fake.state.lock().unwrap().objects.remove(MONGODB_ADMIN);
    fake.reconcile().await.unwrap();
    fake.reconcile().await.unwrap();
    let databases = fake.condition("DatabasesReady");
    assert_eq!(databases["status"], "False");
    assert_eq!(databases["reason"], "CredentialsMissing");
    assert_eq!(databases["message"], "secret mongodb-admin: not found");
    for service in DATABASES {
        assert!(fake.object(&database_secret(service)).is_none());
    }
    fake.deployments_ready();
    fake.reconcile().await.unwrap();
    assert_eq!(
        fake.condition("Ready")["message"],
        "waiting for the service databases (see DatabasesReady)"
    );
}

#[tokio::test]
async fn a_lost_database_secret_gets_a_new_password() {
    let fake = Fake::created(spec()).await;
    let before = decode(&fake.object(&database_secret("cart")).unwrap()["data"]["password"]);
    fake.state
        .lock()
        .unwrap()
        .objects
        .remove(&database_secret("cart"));
    fake.reconcile().await.unwrap();
    assert_eq!(
        fake.writes(),
        [("PATCH".to_owned(), database_secret("cart"))]
    );
    let after = decode(&fake.object(&database_secret("cart")).unwrap()["data"]["password"]);
    assert_ne!(before, after);
}

#[tokio::test]
async fn managed_databases_get_a_stateful_set_each_with_a_generated_admin_password() {
    let mut managed = spec();
    managed["mongodb"] = json!({ "mode": "managed", "storage": "2Gi" });
    let fake = Fake::created(managed).await;
    for service in DATABASES {
        let set = fake
            .object(&format!(
                "/apis/apps/v1/namespaces/prod/statefulsets/shop-{service}-db"
            ))
            .unwrap_or_else(|| panic!("no StatefulSet for {service}"));
        assert_eq!(set["spec"]["serviceName"], format!("shop-{service}-db"));
        assert!(
            fake.object(&format!(
                "/api/v1/namespaces/prod/services/shop-{service}-db"
            ))
            .is_some()
        );
        let admin = fake
            .object(&format!(
                "/api/v1/namespaces/prod/secrets/shop-{service}-db-admin"
            ))
            .unwrap();
        assert_eq!(decode(&admin["data"]["password"]).len(), 64);
    }
    // No kubelet runs the databases here: the condition says which one it cannot reach.
    let databases = fake.condition("DatabasesReady");
    assert_eq!(databases["status"], "False");
    assert_eq!(databases["reason"], "MongoUnreachable", "{databases}");
    assert!(
        databases["message"]
            .as_str()
            .unwrap()
            .contains("shop-auth-db-0.shop-auth-db.prod.svc"),
        "{databases}"
    );
    // The admin passwords are made once: a second pass writes nothing.
    fake.reconcile().await.unwrap();
    assert_eq!(fake.writes(), []);
}

#[tokio::test]
async fn an_unreachable_broker_is_named_in_the_status_and_the_shop_is_not_ready() {
    let mut unreachable = spec();
    unreachable["kafka"]["bootstrapServers"] = json!("127.0.0.1:9");
    let fake = Fake::created(unreachable).await;
    fake.deployments_ready();
    fake.reconcile().await.unwrap();
    let kafka = fake.condition("KafkaReady");
    assert_eq!(kafka["status"], "False");
    assert_eq!(kafka["reason"], "BrokerUnreachable");
    assert!(
        kafka["message"]
            .as_str()
            .unwrap()
            .starts_with("broker unreachable:"),
        "{kafka}"
    );
    let ready = fake.condition("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(
        ready["message"],
        "waiting for the Kafka topics (see KafkaReady)"
    );
    assert_eq!(fake.condition("ServicesAvailable")["status"], "True");
}

#[tokio::test]
async fn a_steady_shop_is_only_read_and_turns_ready_with_its_deployments() {
    let fake = Fake::created(spec()).await;
    fake.reconcile().await.unwrap();
    assert_eq!(fake.writes(), [], "nothing changed: no writes");

    fake.deployments_ready();
    fake.reconcile().await.unwrap();
    assert_eq!(
        fake.writes(),
        [("PATCH".to_owned(), format!("{STOREFRONT}/status"))]
    );
    assert_eq!(fake.condition("Ready")["status"], "True");
    assert_eq!(
        fake.storefront().status.unwrap().ready_services.as_deref(),
        Some("7/7")
    );
    for _ in 0..3 {
        fake.reconcile().await.unwrap();
        assert_eq!(fake.writes(), [], "ready and unchanged: no writes");
    }
}

#[tokio::test]
async fn a_spec_change_rewrites_only_what_it_changes_and_prunes_what_it_drops() {
    let fake = Fake::created(spec()).await;
    fake.edit(|sf| sf["spec"]["services"] = json!({ "web": { "replicas": 2 } }));
    fake.reconcile().await.unwrap();
    let writes = fake.writes();
    assert_eq!(
        writes,
        [
            ("PATCH".to_owned(), deployment("web")),
            ("PATCH".to_owned(), budget("web")),
            ("PATCH".to_owned(), format!("{STOREFRONT}/status")),
        ]
    );
    assert_eq!(
        fake.object(&deployment("web")).unwrap()["spec"]["replicas"],
        2
    );

    fake.edit(|sf| sf["spec"]["services"] = json!({}));
    fake.reconcile().await.unwrap();
    let writes = fake.writes();
    assert!(
        writes.contains(&("DELETE".to_owned(), budget("web"))),
        "{writes:?}"
    );
    assert!(fake.object(&budget("web")).is_none());
}

#[tokio::test]
async fn an_existing_signing_key_is_never_replaced() {
    let fake = Fake::new(spec());
    let mine = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "shop-jwt", "namespace": "prod" },
        "data": { "signing-key.pem": "bWluZQ==" },
    });
    fake.state
        .lock()
        .unwrap()
        .objects
        .insert(SIGNING_KEY.into(), mine.clone());
    fake.reconcile().await.unwrap();
    fake.reconcile().await.unwrap();
    let writes = fake.writes();
    assert!(!writes.iter().any(|(_, p)| p == SIGNING_KEY), "{writes:?}");
    assert_eq!(fake.object(SIGNING_KEY).unwrap(), mine);
}

#[tokio::test]
async fn an_administrator_made_beforehand_is_kept() {
    let fake = Fake::new(spec());
    let mine = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "shop-admin", "namespace": "prod" },
        "data": { "email": "b3BzQGV4YW1wbGUuY29t", "password": "c2VjcmV0IHNlY3JldA==" },
    });
    fake.state
        .lock()
        .unwrap()
        .objects
        .insert(ADMIN.into(), mine.clone());
    fake.reconcile().await.unwrap();
    fake.reconcile().await.unwrap();
    let writes = fake.writes();
    assert!(!writes.iter().any(|(_, p)| p == ADMIN), "{writes:?}");
    assert_eq!(fake.object(ADMIN).unwrap(), mine);
}

#[tokio::test]
async fn a_deleted_child_comes_back() {
    let fake = Fake::created(spec()).await;
    let service = "/api/v1/namespaces/prod/services/shop-cart";
    fake.state.lock().unwrap().objects.remove(service);
    fake.reconcile().await.unwrap();
    assert_eq!(fake.writes(), [("PATCH".to_owned(), service.to_owned())]);
    assert!(fake.object(service).is_some());
}

#[tokio::test]
async fn a_paused_shop_gets_no_writes_but_its_status() {
    let fake = Fake::created(spec()).await;
    fake.edit(|sf| {
        sf["spec"]["paused"] = json!(true);
        sf["spec"]["services"] = json!({ "web": { "replicas": 4 } });
    });
    fake.reconcile().await.unwrap();
    assert_eq!(
        fake.writes(),
        [("PATCH".to_owned(), format!("{STOREFRONT}/status"))]
    );
    assert_eq!(
        fake.object(STOREFRONT).unwrap()["status"]["phase"],
        "Paused"
    );
    assert_eq!(
        fake.object(&deployment("web")).unwrap()["spec"]["replicas"],
        1
    );
    fake.reconcile().await.unwrap();
    assert_eq!(fake.writes(), []);
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_is_applied() {
    let mut bad = spec();
    bad["host"] = json!("Shop Example");
    let fake = Fake::new(bad);
    fake.reconcile().await.unwrap();
    fake.writes();
    assert_eq!(fake.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(
        fake.writes(),
        [("PATCH".to_owned(), format!("{STOREFRONT}/status"))]
    );
    let ready = fake.condition("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"].as_str().unwrap().starts_with("spec.host:"),
        "{ready}"
    );
    assert_eq!(
        fake.object(STOREFRONT).unwrap()["status"]["phase"],
        "Degraded"
    );
}

#[tokio::test]
async fn deleting_the_storefront_runs_the_cleanup_and_lets_it_go() {
    let fake = Fake::created(spec()).await;
    fake.edit(|sf| sf["metadata"]["deletionTimestamp"] = json!("2026-11-23T00:00:00Z"));
    fake.reconcile().await.unwrap();
    assert_eq!(fake.writes(), [("PATCH".to_owned(), STOREFRONT.to_owned())]);
    assert!(fake.storefront().finalizers().is_empty());
}

#[tokio::test]
async fn under_delete_the_services_are_stopped_before_their_databases_go() {
    let mut delete = spec();
    delete["deletionPolicy"] = json!("Delete");
    let fake = Fake::created(delete).await;
    fake.edit(|sf| sf["metadata"]["deletionTimestamp"] = json!("2026-11-23T00:00:00Z"));
    fake.reconcile().await.unwrap();
    let writes = fake.writes();
    let deleted: Vec<&str> = writes
        .iter()
        .filter(|(method, _)| method == "DELETE")
        .map(|(_, path)| path.as_str())
        .collect();
    let services = [
        "auth",
        "products",
        "cart",
        "orders",
        "payments",
        "notifications",
        "web",
    ];
    assert_eq!(deleted, services.map(deployment), "{writes:?}");
    assert_eq!(
        writes.last().unwrap(),
        &("PATCH".to_owned(), STOREFRONT.to_owned())
    );
    assert!(fake.storefront().finalizers().is_empty());
}

#[tokio::test]
async fn api_errors_are_labelled_and_retried_later_each_time() {
    let fake = Fake::created(spec()).await;
    fake.state.lock().unwrap().failing = true;
    let error = fake.reconcile().await.unwrap_err();
    // Labelled by the step that failed: the first read is of auth's signing key.
    assert_eq!(error.variant(), "secret", "{error}");
    assert!(error.to_string().contains("Secret shop-jwt"), "{error}");
    let storefront = Arc::new(fake.storefront());
    let pauses: Vec<Action> = (0..3)
        .map(|_| error_policy(storefront.clone(), &error, fake.ctx.clone()))
        .collect();
    assert_eq!(
        pauses,
        [5, 10, 20].map(|s| Action::requeue(Duration::from_secs(s)))
    );
    // Counted by variant for /metrics.
    assert_eq!(fake.ctx.metrics.failures_of("secret"), 3);
    assert!(
        fake.ctx
            .metrics
            .render()
            .contains("storefront_operator_reconcile_failures_total{error=\"secret\"} 3"),
        "{}",
        fake.ctx.metrics.render()
    );
    assert_eq!(fake.ctx.metrics.reconciles.get(), 3);
    // A success resets the count.
    fake.state.lock().unwrap().failing = false;
    fake.reconcile().await.unwrap();
    assert_eq!(
        error_policy(storefront.clone(), &error, fake.ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(storefront.meta().name.as_deref(), Some("shop"));
}

#[tokio::test]
async fn a_failure_names_its_step_and_the_object() {
    let fake = Fake::created(spec()).await;
    // Deployments cannot be read: applying them fails, after the Secrets and the ConfigMap.
    fake.state.lock().unwrap().failing_on = Some("/deployments/");
    let error = fake.reconcile().await.unwrap_err();
    assert_eq!(error.variant(), "apply", "{error}");
    assert!(
        error.to_string().contains("applying Deployment shop-auth"),
        "{error}"
    );
    error_policy(Arc::new(fake.storefront()), &error, fake.ctx.clone());
    assert_eq!(fake.ctx.metrics.failures_of("apply"), 1);
    assert_eq!(fake.ctx.metrics.failures_of("secret"), 0);
}
