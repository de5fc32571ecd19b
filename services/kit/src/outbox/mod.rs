//! The transactional outbox: an event is written in the same MongoDB transaction as the state
//! change it describes, so there is never a change without its event or an event without its change.
//! The [`Relay`] publishes what is unsent to Kafka, in order, and marks it sent once Kafka
//! acknowledged it.
//!
//! The records a transaction appended are handed to the relay in-process when it commits
//! ([`Outbox::commit`], or [`handoff`] after a commit made elsewhere): the relay sends them
//! without reading them back — once one small query found no older record unsent (another
//! replica's, one whose commit was never handed off), since Kafka keeps a key's order only as
//! sent — and marks what Kafka acknowledged sent with one `update_many` for everything sent within
//! [`MARK_EVERY`] (or [`MARK_AT`] records), not one per transaction. Reading
//! the database remains only as recovery: at start, every 2 s, and after anything went wrong
//! (a failed send, a hand-off queue that overflowed, a broker that lost its log), the relay reads
//! up to 100 unsent records in `_id` order, sends them and marks them sent. That finds records
//! appended by another process (`products resync`), left by a relay that died, or committed with an
//! unknown outcome.
//!
//! Delivery is at-least-once: a relay that dies between Kafka's ack and marking the records sent
//! publishes those records again after restart, which is why consumers are idempotent by event id.
//! A relay that is *stopped* marks what it sent before it stops, so a restart publishes every
//! event exactly once.
//!
//! With several replicas, one relay at a time holds a lease document (`outbox_leases`) and the
//! others wait, so events are not published twice and keep their order (a replica that does not
//! hold it leaves what it was handed to the holder's recovery reads). The holder renews it only
//! when less than 12 of its 15 s are left, not at every batch; another relay takes over at most
//! 15 s after the holder died (one that stops releases it at once).
//!
//! A broker that loses its log — the local tansu in memory, which starts empty after a restart; a
//! real Kafka after an unclean leader election — loses events that were sent but not yet read. The
//! relay notices on its next delivery to a partition: the offset Kafka acknowledges is not past the
//! last one it acknowledged there. It then marks every event of that topic sent within
//! [`REPUBLISH_WINDOW`] unsent again, and publishes them anew; consumers drop the ones they had.
//! (Not by asking the broker where partitions end: tansu's answer is the first offset of the last
//! batch plus one, below the end when that batch held more than one event.)
//!
//! By concern: this file (records and how a transaction appends them), `handoff.rs` (what a
//! commit hands to its outbox's relay), `relay.rs` (the relay: sends, marks, recovery reads,
//! the lease, a broker that lost its log).

use std::{sync::Arc, time::Duration};

use mongodb::{
    ClientSession, Collection, Database, IndexModel,
    bson::{self, Document, doc},
    options::IndexOptions,
};
use storefront_events::{Envelope, Event};

use crate::mongo::Transient;

mod handoff;
mod relay;

use handoff::Queue;
pub(crate) use handoff::forget;
pub use handoff::handoff;
pub use relay::{MARK_AT, MARK_EVERY, REPUBLISH_WINDOW, Relay, RelayError};

const RECORDS: &str = "outbox";
/// Sent records are kept this long for inspection, then MongoDB's TTL monitor removes them.
const KEEP_SENT: Duration = Duration::from_secs(7 * 24 * 3600);

/// An event encoded for [`Outbox::append_all`].
#[derive(Debug, Clone)]
pub struct Encoded(Record);

/// One outbox record, as stored and as sent.
#[derive(Debug, Clone)]
struct Record {
    id: String,
    event_type: String,
    topic: String,
    key: String,
    payload: String,
    /// The trace context of the span that appended it (`crate::telemetry`), sent on as the
    /// message's `traceparent` header; `None` when traces are off.
    traceparent: Option<String>,
}

impl Record {
    fn read(record: &Document) -> Result<Record, RelayError> {
        let field = |name: &str| {
            record
                .get_str(name)
                .map(str::to_owned)
                .map_err(|_| RelayError::Malformed(format!("{:?}", record.get("_id"))))
        };
        Ok(Record {
            id: field("_id")?,
            event_type: record.get_str("type").unwrap_or_default().to_owned(),
            topic: field("topic")?,
            key: field("key")?,
            payload: field("payload")?,
            traceparent: record.get_str("traceparent").ok().map(str::to_owned),
        })
    }
}

/// Appends events inside a service's transactions.
#[derive(Clone)]
pub struct Outbox {
    records: Collection<Document>,
    topic_prefix: String,
    queue: Arc<Queue>,
}

impl Outbox {
    pub fn new(db: &Database, topic_prefix: &str) -> Self {
        Outbox {
            records: db.collection(RECORDS),
            topic_prefix: topic_prefix.to_owned(),
            queue: Arc::default(),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.records
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "sent": 1, "_id": 1 })
                    .build(),
            )
            .await?;
        self.records
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "sent_at": 1 })
                    .options(IndexOptions::builder().expire_after(KEEP_SENT).build())
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Writes `event` in the caller's transaction. Commit it with [`Outbox::commit`] (or call
    /// [`handoff`] after the commit), so the relay sends it at once.
    pub async fn append<E: Event>(
        &self,
        session: &mut ClientSession,
        event: Envelope<E>,
    ) -> Result<(), AppendError> {
        let record = self.encode(event)?;
        self.append_all(session, vec![record]).await
    }

    /// Encodes `event` as a record for [`Outbox::append_all`]: several events of different types
    /// written in one command.
    pub fn encode<E: Event>(&self, event: Envelope<E>) -> Result<Encoded, AppendError> {
        let topic = E::TOPIC.name(&self.topic_prefix);
        let raw = event.into_raw()?;
        let payload = serde_json::to_string(&raw)?;
        let traceparent = crate::telemetry::traceparent_for(&raw.key);
        Ok(Encoded(Record {
            // UUIDv7: the string order is the creation order, which the recovery read keeps.
            id: raw.id.to_string(),
            event_type: raw.event_type,
            topic,
            key: raw.key,
            payload,
            traceparent,
        }))
    }

    /// Writes `records`, in their order, in the caller's transaction with one insert (as
    /// [`Outbox::append`] does one).
    pub async fn append_all(
        &self,
        session: &mut ClientSession,
        records: Vec<Encoded>,
    ) -> Result<(), AppendError> {
        if records.is_empty() {
            return Ok(());
        }
        let created_at = bson::DateTime::now();
        let mut documents: Vec<Document> = records
            .iter()
            .map(|Encoded(record)| {
                let mut document = doc! {
                    "_id": &record.id,
                    "type": &record.event_type,
                    "topic": &record.topic,
                    "key": &record.key,
                    "payload": &record.payload,
                    "created_at": created_at,
                    "sent": false,
                };
                if let Some(traceparent) = &record.traceparent {
                    document.insert("traceparent", traceparent);
                }
                document
            })
            .collect();
        if let [_] = documents.as_slice() {
            self.records
                .insert_one(documents.remove(0))
                .session(&mut *session)
                .await?;
        } else {
            self.records
                .insert_many(documents)
                .session(&mut *session)
                .await?;
        }
        handoff::stage(
            session,
            &self.queue,
            records.into_iter().map(|Encoded(record)| record),
        );
        Ok(())
    }

    /// Commits a transaction that appended events, and hands them to the relay.
    pub async fn commit(&self, mut session: ClientSession) -> Result<(), mongodb::error::Error> {
        session.commit_transaction().await?;
        handoff(&session);
        Ok(())
    }
}

/// Why an event could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The insert failed. Keeps MongoDB's error whole: a transient one (a write conflict, a
    /// server that went away) makes the caller's transaction worth running again.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("the event cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

impl AppendError {
    /// Into a service's store error: MongoDB's error whole (so a transient one runs the caller's
    /// transaction again), an event that cannot be encoded wrapped by `encode` (which keeps it
    /// as its source): `impl From<AppendError> for StoreError` is `e.into_store(StoreError::Outbox)`.
    pub fn into_store<E: From<mongodb::error::Error>>(
        self,
        encode: impl FnOnce(AppendError) -> E,
    ) -> E {
        match self {
            AppendError::Mongo(e) => e.into(),
            other => encode(other),
        }
    }
}

impl Transient for AppendError {
    fn is_transient(&self) -> bool {
        matches!(self, AppendError::Mongo(e) if e.is_transient())
    }
}
