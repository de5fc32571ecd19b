//! Reconciling one `Storefront`: validate → build → the generated Secrets → dereference → apply →
//! prune → external resources → status (Stackable's order),
//! inside kube's `finalizer()` so deletion runs the cleanup first.
//!
//! No self-loops: every object the operator applies carries the hash of what it wanted
//! (`storefront.dev/desired-hash`), and an object whose hash already matches is not written again;
//! status is written only when it changed. In steady state a reconcile only reads.

mod apply;
pub mod build;
mod cleanup;
mod dereference;
mod events;
mod external;
mod status;
pub mod validate;

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

use self::build::MANAGER;
use crate::{
    crd::{
        ConditionType, DeletionPolicy, Phase, SecretKeyRef, ServiceStatus, Storefront,
        StorefrontStatus,
    },
    databases::{self, DatabaseError},
    kafka::{self, TopicError, Topics},
    metrics::Metrics,
    shop::{Databases, Shop},
    storage::{self, Credentials, StorageError},
};

use self::{apply::*, cleanup::*, dereference::*, events::*, external::*, status::*};

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

/// Why a reconcile failed, named by its step: [`Error::variant`] labels the failures metric, the
/// log line and the Warning Event, so a dashboard tells an RBAC gap on Secrets from a rejected
/// object or a status that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or creating a Secret of the shop: its signing key, its first admin, a database's
    /// password, or the credentials the Storefront refers to.
    #[error("Secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Applying an object the operator owns (or reading it to see whether it must).
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Listing or deleting owned objects the spec no longer wants.
    #[error("pruning {kind}: {source}")]
    Prune {
        kind: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the Storefront's status.
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("the Storefront has no namespace")]
    NoNamespace,
    #[error("cannot generate a key or password")]
    KeyGeneration,
}

impl Error {
    /// The label of the failures metric (and of the log line and the Event): the failed step.
    pub fn variant(&self) -> &'static str {
        match self {
            Error::Secret { .. } => "secret",
            Error::Apply { .. } => "apply",
            Error::Prune { .. } => "prune",
            Error::Status(_) => "status",
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

    fn secret(name: &str) -> impl FnOnce(kube::Error) -> Error {
        let name = name.to_owned();
        move |source| Error::Secret { name, source }
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
