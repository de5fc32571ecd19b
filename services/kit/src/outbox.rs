//! The transactional outbox: an event is written in the same MongoDB transaction as the state
//! change it describes, so there is never a change without its event or an event without its change.
//! The [`Relay`] publishes what is unsent to Kafka, in order, and marks each record sent once Kafka
//! acknowledged it.
//!
//! Delivery is at-least-once: a relay that dies between Kafka's ack and marking the record sent
//! publishes that one record again after restart, which is why consumers are idempotent by event id.
//! A relay that is *stopped* stops between records, so a restart publishes every event exactly once.
//!
//! With several replicas, one relay at a time holds a lease document (`outbox_leases`) and the
//! others wait, so events are not published twice and keep their order.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::{
    ClientSession, Collection, Database, IndexModel,
    bson::{self, Document, doc},
    options::{FindOptions, IndexOptions, ReturnDocument},
};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use storefront_events::{Envelope, Event};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::{Error, mongo::is_duplicate_key};

const RECORDS: &str = "outbox";
const LEASES: &str = "outbox_leases";
const LEASE_ID: &str = "outbox-relay";
const LEASE_TTL: Duration = Duration::from_secs(15);
const BATCH: i64 = 100;
/// Sent records are kept this long for inspection, then MongoDB's TTL monitor removes them.
const KEEP_SENT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Appends events inside a service's transactions.
#[derive(Clone)]
pub struct Outbox {
    records: Collection<Document>,
    topic_prefix: String,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(db: &Database, topic_prefix: &str) -> Self {
        Outbox {
            records: db.collection(RECORDS),
            topic_prefix: topic_prefix.to_owned(),
            wake: Arc::new(Notify::new()),
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

    /// Writes `event` in the caller's transaction. Call [`Outbox::committed`] after the commit.
    pub async fn append<E: Event>(
        &self,
        session: &mut ClientSession,
        event: Envelope<E>,
    ) -> Result<(), Error> {
        let topic = E::TOPIC.name(&self.topic_prefix);
        let raw = event.into_raw().map_err(Error::internal)?;
        let payload = serde_json::to_string(&raw).map_err(Error::internal)?;
        self.records
            .insert_one(doc! {
                // UUIDv7: the string order is the creation order, which the relay keeps.
                "_id": raw.id.to_string(),
                "type": &raw.event_type,
                "topic": topic,
                "key": &raw.key,
                "payload": payload,
                "created_at": bson::DateTime::now(),
                "sent": false,
            })
            .session(session)
            .await?;
        Ok(())
    }

    /// Commits a transaction that appended events, and wakes the relay.
    pub async fn commit(&self, mut session: ClientSession) -> Result<(), mongodb::error::Error> {
        session.commit_transaction().await?;
        self.committed();
        Ok(())
    }

    /// Tells the relay there is something to publish, so it need not wait for its next poll.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    pub fn relay(&self, db: &Database, producer: FutureProducer) -> Relay {
        Relay {
            records: self.records.clone(),
            leases: db.collection(LEASES),
            producer,
            wake: self.wake.clone(),
            owner: Uuid::new_v4().to_string(),
            poll: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("outbox record {0} is malformed")]
    Malformed(String),
}

/// Publishes the outbox to Kafka. Run it with [`Relay::run`] on a task of its own.
pub struct Relay {
    records: Collection<Document>,
    leases: Collection<Document>,
    producer: FutureProducer,
    wake: Arc<Notify>,
    owner: String,
    poll: Duration,
}

impl Relay {
    /// Publishes until `stop` turns true. Errors are logged and retried after a pause.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(owner = %self.owner, "outbox relay started");
        while !*stop.borrow() {
            let pause = match self.step(&stop).await {
                Ok(0) => self.poll,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay step failed; retrying");
                    Duration::from_secs(1)
                }
            };
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                _ = stop.changed() => {},
                _ = self.wake.notified() => {},
                _ = tokio::time::sleep(pause) => {},
            }
        }
        let _ = self.release().await;
        tracing::info!("outbox relay stopped");
    }

    /// One batch: how many records it published (0 when idle or not the lease holder).
    pub async fn step(&self, stop: &watch::Receiver<bool>) -> Result<usize, RelayError> {
        if !self.hold_lease().await? {
            return Ok(0);
        }
        let batch: Vec<Document> = self
            .records
            .find(doc! { "sent": false })
            .with_options(
                FindOptions::builder()
                    .sort(doc! { "_id": 1 })
                    .limit(BATCH)
                    .build(),
            )
            .await?
            .try_collect()
            .await?;
        let mut published = 0;
        for record in batch {
            if *stop.borrow() {
                break;
            }
            self.publish(&record).await?;
            crate::metrics::backends().outbox_published.inc();
            published += 1;
        }
        if published > 0 {
            crate::metrics::backends().outbox_batches.inc();
        }
        Ok(published)
    }

    async fn publish(&self, record: &Document) -> Result<(), RelayError> {
        let field = |name: &str| {
            record
                .get_str(name)
                .map_err(|_| RelayError::Malformed(format!("{:?}", record.get("_id"))))
        };
        let (id, topic, key, payload) = (
            field("_id")?,
            field("topic")?,
            field("key")?,
            field("payload")?,
        );
        let event_type = record.get_str("type").unwrap_or_default();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event-id",
                value: Some(id),
            })
            .insert(Header {
                key: "event-type",
                value: Some(event_type),
            });
        self.producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(e, _)| e)?;
        self.records
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "sent": true, "sent_at": bson::DateTime::now() } },
            )
            .await?;
        tracing::debug!(event_id = id, topic, "event published");
        Ok(())
    }

    /// Takes or renews the lease; false while another relay holds it.
    async fn hold_lease(&self) -> Result<bool, RelayError> {
        let now = Utc::now();
        let expires = now + LEASE_TTL;
        let result = self
            .leases
            .find_one_and_update(
                doc! {
                    "_id": LEASE_ID,
                    "$or": [ { "owner": &self.owner }, { "expires_at": { "$lt": bson::DateTime::from_millis(now.timestamp_millis()) } } ],
                },
                doc! { "$set": { "owner": &self.owner, "expires_at": bson::DateTime::from_millis(expires.timestamp_millis()) } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self) -> Result<(), mongodb::error::Error> {
        self.leases
            .delete_one(doc! { "_id": LEASE_ID, "owner": &self.owner })
            .await
            .map(|_| ())
    }
}
