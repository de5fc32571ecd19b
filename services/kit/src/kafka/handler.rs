//! What a consuming service implements ([`EventHandler`]), what it may fail with, and what the
//! runner reports about each message.

use super::*;

/// Why a handler could not apply an event. Every error is retried, then dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// Lost a race with a concurrent writer: always run again, never dead-lettered.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The event was applied before: the handler's own unique key said so (a handler that keeps
    /// no processed-event record, [`EventHandler::records_processed`]). The runner aborts the
    /// transaction and counts a duplicate.
    #[error("applied before")]
    Duplicate,
    /// Anything else, keeping its cause (a service's store error, a message for an impossible
    /// event): retried, then dead-lettered.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl HandlerError {
    /// An event that does not decode as its type says: retrying will not fix it, so it goes to
    /// the dead-letter topic.
    pub fn malformed(e: impl std::fmt::Display) -> Self {
        HandlerError::Failed(format!("undecodable event: {e}").into())
    }

    /// Whether running the handler again is the whole fix (a write conflict, a failover), so the
    /// attempt does not count towards the dead-letter limit.
    pub fn is_transient(&self) -> bool {
        match self {
            HandlerError::Mongo(e) => crate::mongo::is_transient(e),
            HandlerError::Conflict(_) => true,
            HandlerError::Failed(_) | HandlerError::Duplicate => false,
        }
    }
}

/// What a consuming service implements: which events it wants, and how to apply one.
pub trait EventHandler: Send + Sync + 'static {
    /// The event types (`Event::TYPE`) this handler acts on. Every other event on its topics is
    /// acknowledged by the runner from the `event-type` header alone: no MongoDB work at all.
    fn event_types(&self) -> &[&'static str];

    /// Applies `event` on its own, with no transaction and no processed-event record, when the
    /// handler's write is idempotent by itself — a replica write guarded by the event's version,
    /// which a replay cannot repeat. `Ok(true)`: done; `Ok(false)` (the default): run
    /// [`EventHandler::handle`] in a transaction instead.
    fn apply_idempotent(
        &self,
        event: &Envelope,
    ) -> impl Future<Output = Result<bool, HandlerError>> + Send {
        let _ = event;
        async { Ok(false) }
    }

    /// Whether [`EventHandler::handle`] needs the runner's processed-event record to apply
    /// `event` once (the default). A handler whose write is guarded by the state it moves — a
    /// state machine that refuses a step already taken, a record per order that says what was
    /// done — answers false: a redelivery finds that state and changes nothing, so the record
    /// would be an insert spent for nothing. The write still runs in a transaction (with what it
    /// appends to an outbox), so two deliveries at once conflict and the second finds the first's
    /// work.
    fn records_processed(&self, event: &Envelope) -> bool {
        let _ = event;
        true
    }

    /// Applies one event inside the given transaction (which also records the event id, unless
    /// [`EventHandler::records_processed`] said it needs no record).
    fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Whether `event` may be applied in one transaction with the events queued behind it
    /// ([`EventHandler::handle_all`]); false by default. Only for events the handler guards by
    /// their state (no processed-event record, no [`EventHandler::apply_idempotent`]): a lane
    /// that is behind then spends one transaction, and one read of each document, on many events
    /// instead of a transaction each.
    fn batchable(&self, event: &Envelope) -> bool {
        let _ = event;
        false
    }

    /// Applies `events` — two or more, each [`EventHandler::batchable`], in the order they came —
    /// inside one transaction, with the same effect as [`EventHandler::handle`] of each in turn
    /// (the default does just that). Any error rolls the whole batch back, and the runner applies
    /// the events one by one instead, so a bad event is retried or dead-lettered on its own.
    fn handle_all(
        &self,
        events: &[&Envelope],
        session: &mut ClientSession,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async move {
            for event in events {
                self.handle(event, session).await?;
            }
            Ok(())
        }
    }

    /// Called after the transaction of a successful [`EventHandler::handle`] of `event`
    /// committed (what it appended to an outbox is already handed to the relay). Events of
    /// different keys are handled concurrently, so per-event state is keyed by `event.id`.
    fn committed(&self, event: &Envelope) {
        let _ = event;
    }
}

/// What a handler learns in [`EventHandler::handle`] and acts on in [`EventHandler::committed`]
/// (a notification to push, a change to announce), per event: the runner applies events of
/// different keys at once. An attempt that failed or was rolled back leaves nothing to act on:
/// `handle` starts with [`UntilCommitted::begin`].
pub struct UntilCommitted<T>(std::sync::Mutex<HashMap<uuid::Uuid, T>>);

impl<T> Default for UntilCommitted<T> {
    fn default() -> Self {
        UntilCommitted(std::sync::Mutex::default())
    }
}

impl<T> UntilCommitted<T> {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new attempt at `event`: what an earlier one kept is void.
    pub fn begin(&self, event: &Envelope) {
        self.entries().remove(&event.id);
    }

    pub fn keep(&self, event: &Envelope, value: T) {
        self.entries().insert(event.id, value);
    }

    /// What the committed attempt at `event` kept.
    pub fn take(&self, event: &Envelope) -> Option<T> {
        self.entries().remove(&event.id)
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied in a transaction with its processed-event record.
    Applied,
    /// Applied without a transaction by [`EventHandler::apply_idempotent`].
    Idempotent,
    /// Seen before (its processed-event record exists, or the handler's own key said so).
    Duplicate,
    /// A type the handler does not act on.
    Ignored,
    DeadLettered,
}

impl Outcome {
    /// The `outcome` label of `storefront_kafka_deliveries_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Idempotent => "idempotent",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}
