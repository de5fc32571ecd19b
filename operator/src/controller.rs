//! Reconciling one `Storefront`: validate → build → apply → prune → status (Stackable's order),
//! inside kube's `finalizer()` so deletion runs the cleanup first.
//!
//! No self-loops: every object the operator applies carries the hash of what it wanted
//! (`storefront.dev/desired-hash`), and an object whose hash already matches is not written again;
//! status is written only when it changed. In steady state a reconcile only reads.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{ConfigMap, ObjectReference, Secret, Service as KubeService},
        networking::v1::{Ingress, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{
            Event as KubeEvent, EventType, EventType::Normal, EventType::Warning, Recorder,
            Reporter,
        },
        finalizer::{self, Event},
        predicates,
        reflector::{self},
        utils::Predicate,
        watcher::{self, watcher},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    build::{self, MANAGER},
    crd::{DeletionPolicy, Phase, SecretKeyRef, ServiceStatus, Storefront, StorefrontStatus},
    databases::{self, DatabaseError},
    kafka::{self, TopicError, Topics},
    metrics::Metrics,
    shop::{Databases, Shop},
    storage::{self, Credentials, StorageError},
};

pub const FINALIZER: &str = "storefront.dev/cleanup";
pub const HASH_ANNOTATION: &str = "storefront.dev/desired-hash";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Whether the API server serves `policy/v1` PodDisruptionBudgets (Kubernetes >= 1.21).
    pub budgets: bool,
    /// The one namespace watched (`WATCH_NAMESPACE`), or every namespace.
    pub namespace: Option<String>,
    pub metrics: Metrics,
    /// Kubernetes Events about Storefronts (none in the scenarios on the fake API server).
    recorder: Option<Recorder>,
    /// Failures in a row per Storefront (`namespace/name`), for the retry pause.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client) -> Arc<Context> {
        Arc::new(Context {
            client,
            budgets: true,
            namespace: None,
            metrics: Metrics::new(),
            recorder: None,
            failures: Mutex::default(),
        })
    }

    /// A context for the API server `client` talks to, after asking it what it serves; watching
    /// `namespace` only, or every namespace.
    pub async fn discover(
        client: Client,
        namespace: Option<String>,
    ) -> Result<Arc<Context>, kube::Error> {
        let budgets = match client.list_api_group_resources("policy/v1").await {
            Ok(list) => list
                .resources
                .iter()
                .any(|r| r.name == "poddisruptionbudgets"),
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(e) => return Err(e),
        };
        if !budgets {
            tracing::warn!(
                "the API server does not serve policy/v1 PodDisruptionBudgets (Kubernetes < 1.21): \
                 shops get none"
            );
        }
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Ok(Arc::new(Context {
            client,
            budgets,
            namespace,
            metrics: Metrics::new(),
            recorder: Some(recorder),
            failures: Mutex::default(),
        }))
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn key(storefront: &Storefront) -> String {
    format!(
        "{}/{}",
        storefront.namespace().unwrap_or_default(),
        storefront.name_any()
    )
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("the Storefront has no namespace")]
    NoNamespace,
    #[error("cannot generate a key or password")]
    KeyGeneration,
}

impl Error {
    /// The label of the failures metric (and of the log line).
    pub fn variant(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.variant()
                }
                _ => "finalizer",
            },
            Error::NoNamespace => "no-namespace",
            Error::KeyGeneration => "key-generation",
        }
    }
}

pub async fn reconcile(storefront: Arc<Storefront>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let _timer = ctx.metrics.duration.start_timer();
    let namespace = storefront.namespace().ok_or(Error::NoNamespace)?;
    let key = key(&storefront);
    let api: Api<Storefront> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer::finalizer(&api, FINALIZER, storefront, |event| async {
        match event {
            Event::Apply(storefront) => apply(&storefront, &ctx).await,
            Event::Cleanup(storefront) => cleanup(&storefront, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.failures().remove(&key);
    Ok(action)
}

/// A failed reconcile runs again after a pause that doubles with each failure in a row
/// (5 s, 10 s, … at most 5 min).
pub fn error_policy(storefront: Arc<Storefront>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut all = ctx.failures();
        let n = all.entry(key(&storefront)).or_insert(0);
        *n += 1;
        *n
    };
    ctx.metrics
        .failures
        .with_label_values(&[error.variant()])
        .inc();
    let note = error.to_string();
    let variant = error.variant();
    let (about, context) = (storefront.clone(), ctx.clone());
    tokio::spawn(async move {
        publish(
            &context,
            &about,
            Warning,
            "ReconcileFailed",
            variant,
            note,
            None,
        )
        .await;
    });
    tracing::warn!(
        storefront = %key(&storefront),
        error = %error,
        variant = error.variant(),
        failures,
        "reconcile failed"
    );
    retry_after(failures)
}

pub fn retry_after(failures: u32) -> Action {
    let seconds = 5u64
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(300);
    Action::requeue(Duration::from_secs(seconds))
}

async fn apply(storefront: &Storefront, ctx: &Context) -> Result<Action, Error> {
    let namespace = storefront.namespace().ok_or(Error::NoNamespace)?;
    if storefront.spec.paused {
        let status = StorefrontStatus {
            phase: Some(Phase::Paused),
            ..carried_over(storefront)
        };
        write_status(storefront, &namespace, status, ctx).await?;
        return Ok(Action::await_change());
    }
    let shop = match Shop::validate(storefront) {
        Ok(shop) => shop,
        Err(invalid) => {
            let mut status = carried_over(storefront);
            status.phase = Some(Phase::Degraded);
            set_condition(
                &mut status.conditions,
                storefront,
                "Ready",
                false,
                "InvalidSpec",
                &invalid.to_string(),
            );
            write_status(storefront, &namespace, status, ctx).await?;
            // Nothing to do until the spec changes.
            return Ok(Action::await_change());
        }
    };

    let objects = build::objects(&shop);
    let to = Target {
        ctx,
        storefront,
        namespace: namespace.clone(),
    };
    ensure_signing_key(&to, &shop).await?;
    ensure_shop_admin(&to, &shop).await?;
    ensure(&to, objects.config_map).await?;
    for service in objects.database_services {
        ensure(&to, service).await?;
    }
    if matches!(shop.databases, Databases::Managed { .. }) {
        for planned in shop.database_services() {
            ensure_admin_password(&to, &shop, planned.service.name).await?;
        }
    }
    for database in objects.databases {
        ensure(&to, database).await?;
    }
    let mut deployments = Vec::new();
    for deployment in objects.deployments {
        deployments.push(ensure(&to, deployment).await?);
    }
    for service in objects.services {
        ensure(&to, service).await?;
    }
    let budgets: Vec<String> = objects
        .disruption_budgets
        .iter()
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    if ctx.budgets {
        for budget in objects.disruption_budgets {
            ensure(&to, budget).await?;
        }
    }
    for policy in objects.network_policies {
        ensure(&to, policy).await?;
    }
    for ingress in objects.ingresses {
        ensure(&to, ingress).await?;
    }
    // The only children that come and go with the spec: budgets of services scaled to one.
    if ctx.budgets {
        prune::<PodDisruptionBudget>(&to, &shop, &budgets).await?;
    }

    // External resources: the topics, the databases and their users, the bucket.
    let topics = kafka::ensure(
        &shop.kafka.bootstrap_servers,
        &shop.topic_prefix(),
        shop.kafka.partitions,
        shop.kafka.replication_factor,
    )
    .await;
    if let Err(e) = &topics {
        tracing::warn!(storefront = %key(storefront), error = %e, "topics not ready");
    }
    if let Ok(topics) = &topics {
        for (list, reason, what) in [
            (&topics.created, "TopicsCreated", "created"),
            (&topics.grown, "TopicsGrown", "grown"),
        ] {
            if !list.is_empty() {
                to.event(
                    Normal,
                    reason,
                    "Kafka",
                    format!("topics {what}: {}", list.join(", ")),
                )
                .await;
            }
        }
    }
    let bucket = ensure_bucket(&to, &shop).await;
    match &bucket {
        Ok(true) => {
            let note = format!("bucket {} created", shop.object_storage.bucket);
            to.event(Normal, "BucketCreated", "ObjectStorage", note)
                .await;
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(storefront = %key(storefront), error = %e, "bucket not ready"),
    }
    let bucket = bucket.map(|_| ());

    let databases = ensure_databases(&to, &shop).await?;
    if let Err(e) = &databases {
        tracing::warn!(storefront = %key(storefront), error = %e, "databases not ready");
    }

    let external = External {
        topics,
        databases,
        bucket,
    };
    let status = status_of(storefront, &shop, &deployments, &external);
    to.conditions_turned_false(&status).await;
    let waiting = status.phase != Some(Phase::Ready);
    write_status(storefront, &namespace, status, ctx).await?;
    // Deployments becoming ready wake the controller (it watches them); the requeue is a
    // safety net against a missed event.
    Ok(Action::requeue(Duration::from_secs(if waiting {
        30
    } else {
        300
    })))
}

async fn cleanup(storefront: &Storefront, ctx: &Context) -> Result<Action, Error> {
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
const STOP_SERVICES: Duration = Duration::from_secs(90);

/// Stops the shop's services before their databases are dropped: a running service writes again
/// (an outbox lease, a processed event) and so makes its database again right after the drop.
/// Their Deployments are deleted in the foreground — the garbage collector removes a Deployment
/// only once its ReplicaSets and their pods are gone — and waited for, bounded: the Storefront
/// must not hang on pods that never go.
async fn stop_services(client: &Client, namespace: &str, shop: &Shop) -> Result<(), String> {
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

/// What became of the external resources in this reconcile.
struct External {
    topics: Result<Topics, TopicError>,
    /// The databases made ready.
    databases: Result<Vec<String>, DatabaseError>,
    bucket: Result<(), StorageError>,
}

/// Reads the object store's credentials from the shop's Secret (dereference) and makes the bucket.
async fn ensure_bucket(to: &Target<'_>, shop: &Shop) -> Result<bool, StorageError> {
    let credentials = storage_credentials(&to.api(), shop).await?;
    storage::ensure_bucket(
        &shop.object_storage.endpoint,
        &credentials,
        &shop.object_storage.bucket,
    )
    .await
}

/// The object store's keys from `objectStorage.credentialsSecret` (the dereference step).
async fn storage_credentials(
    secrets: &Api<Secret>,
    shop: &Shop,
) -> Result<Credentials, StorageError> {
    let name = &shop.object_storage.credentials_secret;
    let problem = |reason: String| StorageError::Credentials {
        secret: name.clone(),
        reason,
    };
    let value = |key: &str| {
        let reference = SecretKeyRef {
            name: name.clone(),
            key: key.to_owned(),
        };
        async move {
            secret_value(secrets, &reference)
                .await
                .map_err(|e| problem(e.to_string()))?
                .map_err(problem)
        }
    };
    Ok(Credentials {
        access_key: value("accessKey").await?,
        secret_key: value("secretKey").await?,
    })
}

/// Where a reconcile writes: the Storefront's namespace; and the Storefront its Events are about.
struct Target<'a> {
    ctx: &'a Context,
    storefront: &'a Storefront,
    namespace: String,
}

impl Target<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    /// Records a Kubernetes Event about the Storefront (best effort: a failure is only logged).
    async fn event(&self, kind: EventType, reason: &str, action: &str, note: String) {
        publish(self.ctx, self.storefront, kind, reason, action, note, None).await;
    }

    /// An Event about the Storefront and one of its children (`related`), so that each child
    /// gets its own Event rather than a count on the first one of the same reason.
    async fn child_event<K>(&self, reason: &str, action: &str, name: &str)
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let kind = K::kind(&Default::default()).into_owned();
        let related = ObjectReference {
            api_version: Some(K::api_version(&Default::default()).into_owned()),
            kind: Some(kind.clone()),
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        };
        let note = format!("{kind} {name}");
        publish(
            self.ctx,
            self.storefront,
            Normal,
            reason,
            action,
            note,
            Some(related),
        )
        .await;
    }

    /// A Warning Event for each backend condition that turns `False` (or changes its reason).
    async fn conditions_turned_false(&self, status: &StorefrontStatus) {
        let before = self.storefront.status.as_ref();
        for condition in &status.conditions {
            let backend = matches!(
                condition.type_.as_str(),
                "KafkaReady" | "DatabasesReady" | "StorageReady"
            );
            let already = before.is_some_and(|b| {
                b.conditions.iter().any(|c| {
                    c.type_ == condition.type_
                        && c.status == "False"
                        && c.reason == condition.reason
                })
            });
            if backend && condition.status == "False" && !already {
                let action = condition.type_.trim_end_matches("Ready").to_owned();
                self.event(
                    Warning,
                    &condition.reason,
                    &action,
                    condition.message.clone(),
                )
                .await;
            }
        }
    }
}

async fn publish(
    ctx: &Context,
    storefront: &Storefront,
    kind: EventType,
    reason: &str,
    action: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    let Some(recorder) = &ctx.recorder else {
        return;
    };
    let event = KubeEvent {
        type_: kind,
        reason: reason.to_owned(),
        // The API server keeps notes to 1 kB.
        note: Some(note.chars().take(1000).collect()),
        action: action.to_owned(),
        secondary: related,
    };
    if let Err(e) = recorder.publish(&event, &storefront.object_ref(&())).await {
        tracing::debug!(storefront = %key(storefront), error = %e, "could not record an Event");
    }
}

/// The value of a Secret's key, trimmed (a dereference of the spec).
async fn secret_value(
    api: &Api<Secret>,
    reference: &SecretKeyRef,
) -> Result<Result<String, String>, Error> {
    let Some(secret) = api.get_opt(&reference.name).await? else {
        return Ok(Err("not found".into()));
    };
    Ok(secret
        .data
        .unwrap_or_default()
        .get(&reference.key)
        .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_owned())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| format!("no key {}", reference.key)))
}

/// The administrator's connection string for a service's database: the Secret the spec names
/// (`external`), or the managed database's own (`managed`).
async fn admin_uri(
    api: &Api<Secret>,
    shop: &Shop,
    service: &str,
) -> Result<Result<String, DatabaseError>, Error> {
    let reference = admin_reference(shop, service);
    Ok(match secret_value(api, &reference).await? {
        Ok(password) if matches!(shop.databases, Databases::Managed { .. }) => {
            Ok(build::database_admin_uri(shop, service, &password))
        }
        Ok(uri) => Ok(uri),
        Err(reason) => Err(DatabaseError::Credentials {
            secret: reference.name,
            reason,
        }),
    })
}

/// Where the administrator's credentials for a service's database are: the connection string
/// the spec names (`external`), or the managed database's generated password (`managed`).
fn admin_reference(shop: &Shop, service: &str) -> SecretKeyRef {
    match &shop.databases {
        Databases::External { admin_uri } => admin_uri.clone(),
        Databases::Managed { .. } => SecretKeyRef {
            name: build::database_admin_secret_name(shop, service),
            key: "password".into(),
        },
    }
}

/// Each service's database user, made with the administrator's connection and written as the
/// Secret `{name}-{service}-mongodb` the service reads (`uri`). The user is made before its Secret,
/// so a Secret always holds a password the database knows; a Secret that is gone gets a new
/// password. Answers the databases made ready; Kubernetes API errors fail the reconcile, the
/// database's own errors go to `DatabasesReady`.
async fn ensure_databases(
    to: &Target<'_>,
    shop: &Shop,
) -> Result<Result<Vec<String>, DatabaseError>, Error> {
    let secrets: Api<Secret> = to.api();
    let mut connected: Option<(String, mongodb::Client)> = None;
    let mut ready = Vec::new();
    for planned in shop.database_services() {
        let service = planned.service.name;
        let admin = match admin_uri(&secrets, shop, service).await? {
            Ok(uri) => uri,
            Err(e) => return Ok(Err(e)),
        };
        let mongo = match connected.take() {
            Some((uri, client)) if uri == admin => client,
            _ => match databases::connect(&admin).await {
                Ok(client) => client,
                Err(e) => return Ok(Err(e)),
            },
        };
        let database = shop.database_name(service);
        let name = build::database_secret_name(shop, service);
        let known = secrets.get_opt(&name).await?.and_then(|secret| {
            secret
                .data?
                .get("password")
                .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
                .filter(|password| !password.is_empty())
        });
        let (password, reset) = match known {
            Some(password) => (password, false),
            None => (
                databases::generate_password().map_err(|_| Error::KeyGeneration)?,
                true,
            ),
        };
        let uri = match databases::service_uri(&admin, &database, service, &password) {
            Ok(uri) => uri,
            Err(reason) => {
                return Ok(Err(DatabaseError::Credentials {
                    secret: admin_reference(shop, service).name,
                    reason,
                }));
            }
        };
        match databases::ensure_user(&mongo, &database, service, &password, reset).await {
            Ok(true) => {
                let note = format!("user {service} on database {database}");
                to.event(Normal, "DatabaseUserReady", "MongoDB", note).await;
            }
            Ok(false) => {}
            Err(e) => return Ok(Err(e)),
        }
        ensure(to, build::database_secret(shop, service, &password, &uri)).await?;
        connected = Some((admin, mongo));
        ready.push(database);
    }
    Ok(Ok(ready))
}

/// Drops each service's user and database (`deletionPolicy: Delete`), one attempt each.
async fn drop_databases(client: &Client, namespace: &str, shop: &Shop) -> Result<(), String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut failures = Vec::new();
    for planned in shop.database_services() {
        let service = planned.service.name;
        let database = shop.database_name(service);
        let result = async {
            let admin = admin_uri(&secrets, shop, service)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let mongo = databases::connect(&admin)
                .await
                .map_err(|e| e.to_string())?;
            databases::drop(&mongo, &database, service)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            failures.push(format!("{database}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// A managed database's administrator password, generated once into `{name}-{service}-db-admin`
/// (the database is initialised with it on its first start, so it must never change).
async fn ensure_admin_password(to: &Target<'_>, shop: &Shop, service: &str) -> Result<(), Error> {
    create_once(
        to,
        &build::database_admin_secret_name(shop, service),
        || {
            let password = databases::generate_password().map_err(|_| Error::KeyGeneration)?;
            Ok(build::database_admin_secret(shop, service, &password))
        },
    )
    .await
}

/// Creates the Secret `name` with what `make` answers, unless it exists; never changes one that
/// does (another replica's or a person's stays). `make` runs only when the Secret is missing.
async fn create_once(
    to: &Target<'_>,
    name: &str,
    make: impl FnOnce() -> Result<Secret, Error>,
) -> Result<(), Error> {
    let api: Api<Secret> = to.api();
    if api.get_metadata_opt(name).await?.is_some() {
        return Ok(());
    }
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &make()?).await {
        Ok(_) => {
            to.child_event::<Secret>("Created", "Create", name).await;
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// auth's signing key, generated once into `{name}-jwt`. Created, never applied: an existing
/// Secret is left exactly as it is, because a new key would sign every customer out (rotation is
/// a deliberate act: replace the Secret's key by hand).
async fn ensure_signing_key(to: &Target<'_>, shop: &Shop) -> Result<(), Error> {
    create_once(to, &shop.object_name(build::SIGNING_KEY_SECRET), || {
        let random = ring::rand::SystemRandom::new();
        let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&random)
            .map_err(|_| Error::KeyGeneration)?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        Ok(build::signing_key_secret(shop, &pem))
    })
    .await
}

/// The shop's first administrator, generated once into `{name}-admin` (`admin@{host}` and a
/// random password) unless the platform engineer made that Secret first with their own.
async fn ensure_shop_admin(to: &Target<'_>, shop: &Shop) -> Result<(), Error> {
    create_once(to, &shop.object_name(build::ADMIN_SECRET), || {
        let password = databases::generate_password().map_err(|_| Error::KeyGeneration)?;
        Ok(build::admin_secret(shop, &password))
    })
    .await
}

/// The hash of what the operator wants an object to be.
fn desired_hash<K: Serialize>(object: &K) -> String {
    let bytes = serde_json::to_vec(object).expect("Kubernetes objects serialize");
    let digest = Sha256::digest(&bytes);
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies `desired` (server-side apply, field manager `storefront-operator`) unless the live
/// object already carries its hash; answers the live object.
async fn ensure<K>(to: &Target<'_>, mut desired: K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let hash = desired_hash(&desired);
    desired
        .annotations_mut()
        .insert(HASH_ANNOTATION.into(), hash.clone());
    let name = desired.name_any();
    let api: Api<K> = to.api();
    let live = api.get_opt(&name).await?;
    if let Some(live) = &live
        && live.annotations().get(HASH_ANNOTATION) == Some(&hash)
    {
        return Ok(live.clone());
    }
    let kind = K::kind(&Default::default()).into_owned();
    let mut body = serde_json::to_value(&desired).expect("Kubernetes objects serialize");
    // Server-side apply needs the type in the body.
    body["apiVersion"] = json!(K::api_version(&Default::default()));
    body["kind"] = json!(kind);
    let params = PatchParams::apply(MANAGER).force();
    let applied = api.patch(&name, &params, &Patch::Apply(&body)).await?;
    let (reason, action) = if live.is_some() {
        ("Updated", "Update")
    } else {
        ("Created", "Create")
    };
    to.child_event::<K>(reason, action, &name).await;
    Ok(applied)
}

/// Deletes this shop's objects of kind `K` whose names are not in `keep`.
async fn prune<K>(to: &Target<'_>, shop: &Shop, keep: &[String]) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = to.api();
    let selector = format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/managed-by={MANAGER}",
        shop.name
    );
    for object in api.list(&ListParams::default().labels(&selector)).await? {
        let name = object.name_any();
        if !keep.contains(&name) {
            api.delete(&name, &DeleteParams::default()).await?;
            to.child_event::<K>("Deleted", "Delete", &name).await;
        }
    }
    Ok(())
}

/// The status fields this reconcile does not recompute.
fn carried_over(storefront: &Storefront) -> StorefrontStatus {
    let old = storefront.status.clone().unwrap_or_default();
    StorefrontStatus {
        observed_generation: storefront.metadata.generation,
        phase: old.phase,
        url: old.url,
        ready_services: old.ready_services,
        services: old.services,
        conditions: old.conditions,
    }
}

fn status_of(
    storefront: &Storefront,
    shop: &Shop,
    deployments: &[Deployment],
    external: &External,
) -> StorefrontStatus {
    let topics = &external.topics;
    let mut status = carried_over(storefront);
    status.url = Some(shop.public_url());
    status.services = BTreeMap::new();
    let mut waiting = Vec::new();
    for (planned, deployment) in shop.services.iter().zip(deployments) {
        let ready = deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready < planned.replicas {
            waiting.push(format!(
                "{} ({ready}/{} ready)",
                planned.service.name, planned.replicas
            ));
        }
        status.services.insert(
            planned.service.name.to_owned(),
            ServiceStatus {
                desired_replicas: planned.replicas,
                ready_replicas: ready,
            },
        );
    }
    let total = shop.services.len();
    status.ready_services = Some(format!("{}/{total}", total - waiting.len()));
    let available = waiting.is_empty();
    let message = if available {
        "every service has its replicas ready".to_owned()
    } else {
        format!("waiting for {}", waiting.join(", "))
    };
    let conditions = &mut status.conditions;
    let reason = if available { "AllReady" } else { "Waiting" };
    set_condition(
        conditions,
        storefront,
        "ServicesAvailable",
        available,
        reason,
        &message,
    );
    let kafka = match topics {
        Ok(topics) => {
            let mut message = format!(
                "{} topics with at least {} partitions",
                topics.total, shop.kafka.partitions
            );
            if !topics.larger.is_empty() {
                message.push_str(&format!(
                    "; {} had more partitions than asked and were kept (Kafka cannot shrink a topic)",
                    topics.larger.join(", ")
                ));
            }
            Ok(("TopicsReady", message))
        }
        Err(e) => Err((
            match e {
                TopicError::Unreachable(_) => "BrokerUnreachable",
                TopicError::Refused(_) => "BrokerRefused",
                TopicError::Topic { .. } => "TopicFailed",
            },
            e.to_string(),
        )),
    };
    let kafka_ready = set_backend(conditions, storefront, "KafkaReady", kafka);
    let storage = match &external.bucket {
        Ok(()) => Ok((
            "BucketReady",
            format!("bucket {} exists", shop.object_storage.bucket),
        )),
        Err(e) => Err((
            match e {
                StorageError::Credentials { .. } => "CredentialsMissing",
                StorageError::Bucket { .. } => "BucketFailed",
            },
            e.to_string(),
        )),
    };
    let storage_ready = set_backend(conditions, storefront, "StorageReady", storage);
    let databases = match &external.databases {
        Ok(names) => Ok((
            "DatabasesReady",
            format!("databases {} with their users", names.join(", ")),
        )),
        Err(e) => Err((
            match e {
                DatabaseError::Credentials { .. } => "CredentialsMissing",
                DatabaseError::Unreachable(_) => "MongoUnreachable",
                DatabaseError::Refused(_) => "AdminRefused",
                DatabaseError::Database { .. } => "DatabaseFailed",
            },
            e.to_string(),
        )),
    };
    let databases_ready = set_backend(conditions, storefront, "DatabasesReady", databases);
    let ready = available && kafka_ready && databases_ready && storage_ready;
    let (reason, message) = if !kafka_ready {
        (
            "KafkaNotReady",
            "waiting for the Kafka topics (see KafkaReady)".to_owned(),
        )
    } else if !databases_ready {
        (
            "DatabasesNotReady",
            "waiting for the service databases (see DatabasesReady)".to_owned(),
        )
    } else if !storage_ready {
        (
            "StorageNotReady",
            "waiting for the image bucket (see StorageReady)".to_owned(),
        )
    } else {
        (reason, message)
    };
    set_condition(conditions, storefront, "Ready", ready, reason, &message);
    status.phase = Some(if ready {
        Phase::Ready
    } else {
        Phase::Progressing
    });
    status
}

/// A backend's condition from what became of it — `Ok` or `Err` of (reason, message); answers
/// whether it is ready.
fn set_backend(
    conditions: &mut Vec<Condition>,
    storefront: &Storefront,
    kind: &str,
    outcome: Result<(&str, String), (&str, String)>,
) -> bool {
    let ready = outcome.is_ok();
    let (reason, message) = outcome.unwrap_or_else(|failed| failed);
    set_condition(conditions, storefront, kind, ready, reason, &message);
    ready
}

fn condition_time(storefront: &Storefront, kind: &str, status: &str) -> Time {
    // Keep the transition time while the status stays the same (so a steady shop writes nothing).
    storefront
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()))
}

fn put(conditions: &mut Vec<Condition>, condition: Condition) {
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    storefront: &Storefront,
    kind: &str,
    ok: bool,
    reason: &str,
    message: &str,
) {
    let status = if ok { "True" } else { "False" };
    put(
        conditions,
        Condition {
            type_: kind.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: storefront.metadata.generation,
            last_transition_time: condition_time(storefront, kind, status),
        },
    );
}

/// Writes the status when it differs from what the Storefront already shows.
async fn write_status(
    storefront: &Storefront,
    namespace: &str,
    status: StorefrontStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if storefront.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<Storefront> = Api::namespaced(ctx.client.clone(), namespace);
    let body = json!({
        "apiVersion": Storefront::api_version(&()),
        "kind": Storefront::kind(&()),
        "status": status,
    });
    api.patch_status(
        &storefront.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// The controller: Storefronts — woken by changes of their spec (generation), finalizers and
/// deletion, not by the status the operator writes itself — and the children this operator made
/// (every watch backs off on errors). Budgets are watched only where the API server has them.
pub fn controller(ctx: &Context) -> Controller<Storefront> {
    let (reader, writer) = reflector::store();
    let storefronts = watcher(api::<Storefront>(ctx), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    let children =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    fn owned<K>(
        ctx: &Context,
        config: &watcher::Config,
    ) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        watcher(api::<PartialObjectMeta<K>>(ctx), config.clone())
            .default_backoff()
            .touched_objects()
    }
    let mut controller = Controller::for_stream(storefronts, reader)
        .owns_stream(owned::<Deployment>(ctx, &children))
        .owns_stream(owned::<StatefulSet>(ctx, &children))
        .owns_stream(owned::<KubeService>(ctx, &children))
        .owns_stream(owned::<ConfigMap>(ctx, &children))
        .owns_stream(owned::<Ingress>(ctx, &children))
        .owns_stream(owned::<NetworkPolicy>(ctx, &children));
    if ctx.budgets {
        controller = controller.owns_stream(owned::<PodDisruptionBudget>(ctx, &children));
    }
    controller
}

/// `K` in the watched namespace, or in all.
fn api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match &ctx.namespace {
        Some(namespace) => Api::namespaced(ctx.client.clone(), namespace),
        None => Api::all(ctx.client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    controller(&ctx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(storefront = %object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error (retried)"),
            }
        })
        .await;
}
