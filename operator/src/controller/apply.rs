//! Apply: the spec validated, the children built and applied (each only when its hash
//! changed), the external resources made, what is no longer wanted pruned, and the status
//! written; the Events a reconcile records.

use super::*;

pub(super) async fn apply(storefront: &Storefront, ctx: &Context) -> Result<Action, Error> {
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
                ConditionType::Ready,
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
    // The Secrets the operator generates once, then every Secret the shop refers to.
    ensure_signing_key(&to, &shop).await?;
    ensure_shop_admin(&to, &shop).await?;
    if matches!(shop.databases, Databases::Managed { .. }) {
        for planned in shop.database_services() {
            ensure_admin_password(&to, &shop, planned.service.name).await?;
        }
    }
    let Dereferenced {
        storage,
        database_admins,
    } = dereference(&to.api(), &shop).await?;

    ensure(&to, objects.config_map).await?;
    for service in objects.database_services {
        ensure(&to, service).await?;
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
    let bucket = match storage {
        Ok(credentials) => ensure_bucket(&shop, &credentials).await,
        Err(e) => Err(e),
    };
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

    let databases = ensure_databases(&to, &shop, database_admins).await?;
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

/// Where a reconcile writes: the Storefront's namespace; and the Storefront its Events are about.
pub(super) struct Target<'a> {
    pub(super) ctx: &'a Context,
    pub(super) storefront: &'a Storefront,
    pub(super) namespace: String,
}

impl Target<'_> {
    pub(super) fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }
}

/// The hash of what the operator wants an object to be.
pub(super) fn desired_hash<K: Serialize>(object: &K) -> String {
    let bytes = serde_json::to_vec(object).expect("Kubernetes objects serialize");
    let digest = Sha256::digest(&bytes);
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies `desired` (server-side apply, field manager `storefront-operator`) unless the live
/// object already carries its hash; answers the live object.
pub(super) async fn ensure<K>(to: &Target<'_>, mut desired: K) -> Result<K, Error>
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
    let kind = K::kind(&Default::default()).into_owned();
    let failed = |source| Error::Apply {
        kind: kind.clone(),
        name: name.clone(),
        source,
    };
    let api: Api<K> = to.api();
    let live = api.get_opt(&name).await.map_err(failed)?;
    if let Some(live) = &live
        && live.annotations().get(HASH_ANNOTATION) == Some(&hash)
    {
        return Ok(live.clone());
    }
    let mut body = serde_json::to_value(&desired).expect("Kubernetes objects serialize");
    // Server-side apply needs the type in the body.
    body["apiVersion"] = json!(K::api_version(&Default::default()));
    body["kind"] = json!(kind);
    let params = PatchParams::apply(MANAGER).force();
    let applied = api
        .patch(&name, &params, &Patch::Apply(&body))
        .await
        .map_err(failed)?;
    let (reason, action) = if live.is_some() {
        ("Updated", "Update")
    } else {
        ("Created", "Create")
    };
    to.child_event::<K>(reason, action, &name).await;
    Ok(applied)
}

/// Deletes this shop's objects of kind `K` whose names are not in `keep`.
pub(super) async fn prune<K>(to: &Target<'_>, shop: &Shop, keep: &[String]) -> Result<(), Error>
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
    let failed = |source| Error::Prune {
        kind: K::kind(&Default::default()).into_owned(),
        source,
    };
    let objects = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(failed)?;
    for object in objects {
        let name = object.name_any();
        if !keep.contains(&name) {
            api.delete(&name, &DeleteParams::default())
                .await
                .map_err(failed)?;
            to.child_event::<K>("Deleted", "Delete", &name).await;
        }
    }
    Ok(())
}
