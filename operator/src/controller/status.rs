//! The Storefront's status: phase, services, conditions, from what a reconcile found.

use super::*;

/// The status fields this reconcile does not recompute.
pub(super) fn carried_over(storefront: &Storefront) -> StorefrontStatus {
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

pub(super) fn status_of(
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
        ConditionType::ServicesAvailable,
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
    let kafka_ready = set_backend(conditions, storefront, ConditionType::KafkaReady, kafka);
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
    let storage_ready = set_backend(conditions, storefront, ConditionType::StorageReady, storage);
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
    let databases_ready = set_backend(
        conditions,
        storefront,
        ConditionType::DatabasesReady,
        databases,
    );
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
    set_condition(
        conditions,
        storefront,
        ConditionType::Ready,
        ready,
        reason,
        &message,
    );
    status.phase = Some(if ready {
        Phase::Ready
    } else {
        Phase::Progressing
    });
    status
}

/// A backend's condition from what became of it — `Ok` or `Err` of (reason, message); answers
/// whether it is ready.
pub(super) fn set_backend(
    conditions: &mut Vec<Condition>,
    storefront: &Storefront,
    kind: ConditionType,
    outcome: Result<(&str, String), (&str, String)>,
) -> bool {
    let ready = outcome.is_ok();
    let (reason, message) = outcome.unwrap_or_else(|failed| failed);
    set_condition(conditions, storefront, kind, ready, reason, &message);
    ready
}

pub(super) fn condition_time(storefront: &Storefront, kind: ConditionType, status: &str) -> Time {
    // Keep the transition time while the status stays the same (so a steady shop writes nothing).
    storefront
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == kind.as_str()))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()))
}

pub(super) fn put(conditions: &mut Vec<Condition>, condition: Condition) {
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

pub(super) fn set_condition(
    conditions: &mut Vec<Condition>,
    storefront: &Storefront,
    kind: ConditionType,
    ok: bool,
    reason: &str,
    message: &str,
) {
    let status = if ok { "True" } else { "False" };
    put(
        conditions,
        Condition {
            type_: kind.as_str().to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: storefront.metadata.generation,
            last_transition_time: condition_time(storefront, kind, status),
        },
    );
}

/// Writes the status when it differs from what the Storefront already shows.
pub(super) async fn write_status(
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
    .await
    .map_err(Error::Status)?;
    Ok(())
}
