//! The Kubernetes Events a reconcile records about a Storefront: what it created, updated or
//! deleted (one Event a child), the backend conditions that turned false, and failed reconciles
//! (`ReconcileFailed`, from `error_policy`). Best effort: an Event that cannot be recorded is only
//! logged.

use super::*;

impl Target<'_> {
    /// Records a Kubernetes Event about the Storefront (best effort: a failure is only logged).
    pub(super) async fn event(&self, kind: EventType, reason: &str, action: &str, note: String) {
        publish(self.ctx, self.storefront, kind, reason, action, note, None).await;
    }

    /// An Event about the Storefront and one of its children (`related`), so that each child
    /// gets its own Event rather than a count on the first one of the same reason.
    pub(super) async fn child_event<K>(&self, reason: &str, action: &str, name: &str)
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
    pub(super) async fn conditions_turned_false(&self, status: &StorefrontStatus) {
        let before = self.storefront.status.as_ref();
        for condition in &status.conditions {
            let backend = ConditionType::parse(&condition.type_).and_then(ConditionType::backend);
            let already = before.is_some_and(|b| {
                b.conditions.iter().any(|c| {
                    c.type_ == condition.type_
                        && c.status == "False"
                        && c.reason == condition.reason
                })
            });
            if let Some(action) = backend
                && condition.status == "False"
                && !already
            {
                self.event(
                    Warning,
                    &condition.reason,
                    action,
                    condition.message.clone(),
                )
                .await;
            }
        }
    }
}

pub(super) async fn publish(
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
