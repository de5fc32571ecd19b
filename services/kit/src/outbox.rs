//! The transactional outbox: an event is written in the same MongoDB transaction as the state
//! change it describes, so there is never a change without its event or an event without its change.
//! The [`Relay`] publishes what is unsent to Kafka, in order, and marks it sent once Kafka
//! acknowledged it.
//!
//! It works in batches: one query reads up to 100 unsent records, all of them are handed to the
//! producer at once (one request in flight per broker keeps their order within a partition), and one
//! `update_many` marks the delivered ones sent. A transaction that appended events wakes the relay
//! in-process ([`Outbox::committed`]); a batch smaller than the limit means nothing was left, so
//! the relay sleeps until the next wake-up. Polling the database remains only as recovery, every
//! 2 s, for records appended by another process or left by a relay that died.
//!
//! Delivery is at-least-once: a relay that dies between Kafka's ack and marking the batch sent
//! publishes those records again after restart, which is why consumers are idempotent by event id.
//! A relay that is *stopped* stops between batches, so a restart publishes every event exactly once.
//!
//! With several replicas, one relay at a time holds a lease document (`outbox_leases`) and the
//! others wait, so events are not published twice and keep their order. The holder renews it only
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

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::{
    ClientSession, Collection, Database, IndexModel,
    bson::{self, Document, doc},
    options::{FindOptions, IndexOptions, ReturnDocument},
};
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, future_producer::Delivery},
};
use storefront_events::{Envelope, Event};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::mongo::{Transient, is_duplicate_key};

const RECORDS: &str = "outbox";
const LEASES: &str = "outbox_leases";
const LEASE_ID: &str = "outbox-relay";
const LEASE_TTL: Duration = Duration::from_secs(15);
/// The lease is renewed when less than this is left of it: more than one batch can take, since its
/// sends give up after the producer's `message.timeout.ms` (10 s, [`crate::kafka::producer`]).
const LEASE_RENEW_BELOW: Duration = Duration::from_secs(12);
const BATCH: i64 = 100;
/// Sent records are kept this long for inspection, then MongoDB's TTL monitor removes them.
const KEEP_SENT: Duration = Duration::from_secs(7 * 24 * 3600);
/// When the broker lost its log, the events sent within this long before are sent again: what a
/// consumer might not have read yet. One further behind misses the rest.
pub const REPUBLISH_WINDOW: Duration = Duration::from_secs(10 * 60);

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
    ) -> Result<(), AppendError> {
        let topic = E::TOPIC.name(&self.topic_prefix);
        let raw = event
            .into_raw()
            .map_err(|e| AppendError::Encode(e.to_string()))?;
        let payload =
            serde_json::to_string(&raw).map_err(|e| AppendError::Encode(e.to_string()))?;
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
            poll: Duration::from_secs(2),
            lease_until: None,
            acked: HashMap::new(),
        }
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
    Encode(String),
}

impl Transient for AppendError {
    fn is_transient(&self) -> bool {
        matches!(self, AppendError::Mongo(e) if e.is_transient())
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
    /// Until when this relay surely holds the lease (measured from before it asked).
    lease_until: Option<Instant>,
    /// The last offset Kafka acknowledged in each partition this relay published to.
    acked: HashMap<(String, i32), i64>,
}

impl Relay {
    /// How often the relay looks for unsent records it was not woken for (default 2 s): events
    /// appended by another process (`products resync`), or left by a relay that died. Everything
    /// this process appends wakes it at once through [`Outbox::committed`].
    pub fn recovery_poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Publishes until `stop` turns true. Errors are logged and retried after a pause.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(owner = %self.owner, "outbox relay started");
        while !*stop.borrow() {
            let pause = match self.step(&stop).await {
                // A full batch: there may be more right behind it.
                Ok(published) if published as i64 == BATCH => Duration::ZERO,
                // Everything committed before this step was read by it, so nothing is left but
                // what a wake-up (or, from elsewhere, the recovery poll) announces.
                Ok(_) => self.poll,
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

    /// One batch: reads up to 100 unsent records in order, sends them all at once (Kafka keeps
    /// the order per partition), and marks the delivered ones sent with one update. Answers how
    /// many it published (0 when idle or not the lease holder).
    pub async fn step(&mut self, stop: &watch::Receiver<bool>) -> Result<usize, RelayError> {
        if !self.hold_lease().await? || *stop.borrow() {
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
        if batch.is_empty() {
            return Ok(0);
        }
        // Enqueued in order, before any is awaited: one request in flight per broker keeps that
        // order within each partition.
        let mut deliveries = Vec::with_capacity(batch.len());
        let mut first_error = None;
        for record in &batch {
            match self.enqueue(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        let mut sent = Vec::with_capacity(deliveries.len());
        let mut lost = BTreeSet::new();
        for (id, topic, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(Delivery {
                    partition, offset, ..
                })) => {
                    sent.push(id);
                    let previous = self.acked.insert((topic.clone(), partition), offset);
                    if previous.is_some_and(|before| offset <= before) {
                        lost.insert(topic);
                    }
                }
                Ok(Err((e, _))) => {
                    first_error.get_or_insert(RelayError::Kafka(e));
                }
                Err(_) => {
                    first_error.get_or_insert(RelayError::Kafka(KafkaError::Canceled));
                }
            }
        }
        if !sent.is_empty() {
            self.records
                .update_many(
                    doc! { "_id": { "$in": &sent } },
                    doc! { "$set": { "sent": true, "sent_at": bson::DateTime::now() } },
                )
                .await?;
            let counters = crate::metrics::backends();
            counters.outbox_published.inc_by(sent.len() as u64);
            counters.outbox_batches.inc();
            tracing::debug!(events = sent.len(), "events published");
        }
        if !lost.is_empty() {
            self.republish(lost).await?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(sent.len()),
        }
    }

    /// The broker lost what it held of `topics`: every event of theirs sent within
    /// [`REPUBLISH_WINDOW`] is marked unsent, so the next steps publish them again, in order.
    async fn republish(&mut self, topics: BTreeSet<String>) -> Result<(), RelayError> {
        self.acked.retain(|(topic, _), _| !topics.contains(topic));
        let since = bson::DateTime::from_millis(
            Utc::now().timestamp_millis() - REPUBLISH_WINDOW.as_millis() as i64,
        );
        let topics: Vec<&String> = topics.iter().collect();
        let marked = self
            .records
            .update_many(
                doc! { "sent": true, "topic": { "$in": &topics }, "sent_at": { "$gte": since } },
                doc! { "$set": { "sent": false } },
            )
            .await?;
        crate::metrics::backends()
            .outbox_republished
            .inc_by(marked.modified_count);
        tracing::warn!(
            ?topics,
            events = marked.modified_count,
            "the broker lost its log; publishing the events of the last minutes again"
        );
        Ok(())
    }

    /// Hands one record to the producer; its delivery is awaited with the rest of the batch.
    fn enqueue(&self, record: &Document) -> Result<(String, String, DeliveryFuture), RelayError> {
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
        let delivery = self
            .producer
            .send_result(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
            )
            .map_err(|(e, _)| RelayError::Kafka(e))?;
        Ok((id.to_owned(), topic.to_owned(), delivery))
    }

    /// Takes or renews the lease; false while another relay holds it. Renewed only when less
    /// than [`LEASE_RENEW_BELOW`] of it is left, so a busy relay writes it about every 5 s
    /// rather than at every batch.
    async fn hold_lease(&mut self) -> Result<bool, RelayError> {
        let asked = Instant::now();
        if self
            .lease_until
            .is_some_and(|until| until.saturating_duration_since(asked) > LEASE_RENEW_BELOW)
        {
            return Ok(true);
        }
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
            Ok(_) => {
                self.lease_until = Some(asked + LEASE_TTL);
                Ok(true)
            }
            Err(e) if is_duplicate_key(&e) => {
                self.lease_until = None;
                Ok(false)
            }
            Err(e) => {
                self.lease_until = None;
                Err(e.into())
            }
        }
    }

    async fn release(&self) -> Result<(), mongodb::error::Error> {
        self.leases
            .delete_one(doc! { "_id": LEASE_ID, "owner": &self.owner })
            .await
            .map(|_| ())
    }
}
