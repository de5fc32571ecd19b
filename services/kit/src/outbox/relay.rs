//! The relay: sends what the outbox's transactions handed it, marks it sent, reads the
//! database for what it was not handed, holds the lease, and republishes what a broker lost.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::{
    Collection, Database,
    bson::{self, Document, doc},
    options::{FindOptions, ReturnDocument},
};
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureRecord, future_producer::Delivery},
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{Outbox, Queue, Record};
use crate::{
    kafka::{DeliveryFuture, KafkaProducer, wake::Announcer},
    mongo::is_duplicate_key,
};

const LEASES: &str = "outbox_leases";
const LEASE_ID: &str = "outbox-relay";
const LEASE_TTL: Duration = Duration::from_secs(15);
/// The lease is renewed when less than this is left of it: more than one batch can take, since its
/// sends give up after the producer's `message.timeout.ms` (10 s, [`crate::kafka::producer`]).
const LEASE_RENEW_BELOW: Duration = Duration::from_secs(12);
const BATCH: usize = 100;
/// Records sent from the hand-off are marked sent together, at most this long after the first of
/// them was acknowledged (or once there are [`MARK_AT`] of them). A relay that dies meanwhile
/// leaves them unsent, and its successor publishes them again: consumers drop what they had.
pub const MARK_EVERY: Duration = Duration::from_secs(1);
/// ...or once this many were sent and not marked. Until marked they are still unsent in the
/// database, so the check before each hand-off ([`Relay::forward`]) reads every one of them: at
/// 27 events a second a relay held ~13 on average, and the check cost twice an empty one (each
/// document read and matched against the list of the unmarked). Eight keep it near the empty
/// check's cost for one more mark every eight events.
pub const MARK_AT: usize = 8;
/// Ids the recovery reads sent lately, so the same records handed off too are not sent twice.
const RECENT: usize = 1_000;
/// When the broker lost its log, the events sent within this long before are sent again: what a
/// consumer might not have read yet. One further behind misses the rest.
pub const REPUBLISH_WINDOW: Duration = Duration::from_secs(10 * 60);

impl Outbox {
    pub fn relay(&self, db: &Database, producer: KafkaProducer) -> Relay {
        Relay {
            records: self.records.clone(),
            leases: db.collection(LEASES),
            producer,
            queue: self.queue.clone(),
            owner: Uuid::new_v4().to_string(),
            poll: Duration::from_secs(2),
            lease_until: None,
            acked: HashMap::new(),
            unmarked: Vec::new(),
            unmarked_since: None,
            recent: VecDeque::new(),
            recent_ids: HashSet::new(),
            read_first: true,
            not_holder_until: None,
            announcer: None,
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

/// What one round of sends came to.
struct Sent {
    ids: Vec<String>,
    error: Option<RelayError>,
    /// Topics whose partitions acknowledged an offset not past the one before: the broker lost them.
    lost: BTreeSet<String>,
}

/// Publishes the outbox to Kafka. Run it with [`Relay::run`] on a task of its own.
pub struct Relay {
    /// Tells dozing consumers which topics a batch wrote to (`kafka::wake`).
    announcer: Option<Announcer>,
    records: Collection<Document>,
    leases: Collection<Document>,
    producer: KafkaProducer,
    queue: Arc<Queue>,
    owner: String,
    poll: Duration,
    /// Until when this relay surely holds the lease (measured from before it asked).
    lease_until: Option<Instant>,
    /// The last offset Kafka acknowledged in each partition this relay published to.
    acked: HashMap<(String, i32), i64>,
    /// Sent from the hand-off, not yet marked sent.
    unmarked: Vec<String>,
    unmarked_since: Option<Instant>,
    /// What the recovery reads sent lately, oldest first, and as a set.
    recent: VecDeque<String>,
    recent_ids: HashSet<String>,
    /// Nothing handed off is sent until a read of the outbox succeeded: at start, and after any
    /// error (a record that failed must not be overtaken by a newer one).
    read_first: bool,
    /// Another relay held the lease when this one last asked: hand-offs are left to it until
    /// then, without asking again for every batch.
    not_holder_until: Option<Instant>,
}

impl Relay {
    /// Announces each batch's topics on this Redis, so dozing consumers wake at once
    /// (`kafka::wake`).
    pub fn announcing(mut self, redis: redis::aio::ConnectionManager) -> Self {
        self.announcer = Some(Announcer::new(redis));
        self
    }

    /// How often the relay reads the database for unsent records it was not handed (default
    /// 2 s): events appended by another process (`products resync`), or left by a relay that
    /// died. Everything this process commits through [`Outbox::commit`] or [`handoff`](super::handoff()) reaches
    /// it at once.
    pub fn recovery_poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Publishes until `stop` turns true. Errors are logged and retried after a pause.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(owner = %self.owner, "outbox relay started");
        // The first round reads the database: what was left before this relay started.
        let mut read_at = Instant::now();
        while !*stop.borrow() {
            let now = Instant::now();
            let result = if now >= read_at {
                self.step(&stop).await.map(|published| {
                    self.read_first = false;
                    // A full batch: there may be more right behind it.
                    read_at = if published == BATCH {
                        now
                    } else {
                        now + self.poll
                    };
                })
            } else if self.read_first {
                Ok(())
            } else {
                match self.forward(&stop).await {
                    Ok(true) => Ok(()),
                    // Something older is unsent, or was left out of the hand-off: read now.
                    Ok(false) => {
                        read_at = now;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            };
            let flushed = if self.mark_due() {
                self.mark().await
            } else {
                Ok(())
            };
            if let Err(e) = result.and(flushed.map_err(RelayError::from)) {
                tracing::warn!(error = %e, "outbox relay step failed; reading the outbox again");
                // Nothing handed off goes out before the read: what failed must not be overtaken.
                self.read_first = true;
                self.queue.clear();
                read_at = Instant::now() + Duration::from_secs(1);
            }
            // Waiting for a read (at start, or after a failure) waits for nothing else: not the
            // hand-off, not the marks' deadline (a mark that failed is retried with the read).
            let forwarding = !self.read_first;
            if read_at <= Instant::now() || (forwarding && !self.queue.is_empty()) {
                continue;
            }
            let mut until = read_at;
            if let Some(since) = self.unmarked_since
                && forwarding
            {
                until = until.min(since + MARK_EVERY);
            }
            tokio::select! {
                _ = stop.changed() => {},
                _ = self.queue.wake.notified(), if forwarding => {},
                _ = tokio::time::sleep_until(until.into()) => {},
            }
        }
        if let Err(e) = self.mark().await {
            tracing::warn!(error = %e, "could not mark the last events sent; they go out again");
        }
        let _ = self.release().await;
        tracing::info!("outbox relay stopped");
    }

    /// A recovery read: marks what was sent from the hand-off, then reads up to 100 unsent
    /// records in order, sends them all at once (Kafka keeps the order per partition), and marks
    /// the delivered ones sent with one update. Answers how many it published (0 when idle or
    /// not the lease holder).
    pub async fn step(&mut self, stop: &watch::Receiver<bool>) -> Result<usize, RelayError> {
        // What was handed off so far is committed, so this read finds it; newer hand-offs that
        // it finds too are recognised by their ids ([`Relay::forward`]).
        self.queue.clear();
        if !self.hold_lease().await? || *stop.borrow() {
            return Ok(0);
        }
        self.mark().await?;
        let batch: Vec<Document> = self
            .records
            .find(doc! { "sent": false })
            .with_options(
                FindOptions::builder()
                    .sort(doc! { "_id": 1 })
                    .limit(BATCH as i64)
                    .build(),
            )
            .await?
            .try_collect()
            .await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let mut records = Vec::with_capacity(batch.len());
        let mut malformed = None;
        for record in &batch {
            match Record::read(record) {
                Ok(record) => records.push(record),
                Err(e) => {
                    // Nothing after it goes out of order before it.
                    malformed = Some(e);
                    break;
                }
            }
        }
        let mut sent = self.send(records).await;
        if let Some(e) = malformed {
            sent.error.get_or_insert(e);
        }
        for id in &sent.ids {
            if self.recent_ids.insert(id.clone()) {
                self.recent.push_back(id.clone());
            }
        }
        while self.recent.len() > RECENT {
            if let Some(old) = self.recent.pop_front() {
                self.recent_ids.remove(&old);
            }
        }
        let published = sent.ids.len();
        self.unmarked.append(&mut sent.ids);
        self.unmarked_since.get_or_insert_with(Instant::now);
        self.mark().await?;
        if !sent.lost.is_empty() {
            self.republish(sent.lost).await?;
        }
        match sent.error {
            Some(e) => Err(e),
            None => Ok(published),
        }
    }

    /// Sends what committed transactions handed off, up to 100 records, and leaves them to be
    /// marked sent with the next ones. `Ok(false)` when the hand-off left records out, or the
    /// broker lost its log: the database is to be read instead.
    async fn forward(&mut self, stop: &watch::Receiver<bool>) -> Result<bool, RelayError> {
        let Some(records) = self.queue.take(BATCH) else {
            return Ok(false);
        };
        if records.is_empty() {
            return Ok(true);
        }
        // The holder's recovery read publishes what another relay's process committed.
        if self
            .not_holder_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Ok(true);
        }
        let had_lease = self.lease_until.is_some();
        if !self.hold_lease().await? {
            self.not_holder_until = Some(Instant::now() + self.poll);
            return Ok(true);
        }
        self.not_holder_until = None;
        if !had_lease || *stop.borrow() {
            // Just took the lease over: what the last holder left goes first, by a read.
            return Ok(false);
        }
        let records: Vec<Record> = records
            .into_iter()
            .filter(|r| !self.recent_ids.contains(&r.id))
            .collect();
        let Some(oldest) = records.iter().map(|r| r.id.as_str()).min() else {
            return Ok(true);
        };
        // Kafka keeps a key's events in the order they are sent, so nothing goes out while an
        // older record is unsent: one appended by another replica (whose relay does not hold the
        // lease), a commit never handed off (its outcome unknown, its request cancelled), a
        // record of another process. Then the read sends them all in `_id` order.
        let older = self
            .records
            .find_one(doc! { "sent": false, "_id": { "$lt": oldest, "$nin": &self.unmarked } })
            .projection(doc! { "_id": 1 })
            .await?;
        if older.is_some() {
            return Ok(false);
        }
        let mut sent = self.send(records).await;
        if !sent.ids.is_empty() {
            self.unmarked.append(&mut sent.ids);
            self.unmarked_since.get_or_insert_with(Instant::now);
        }
        if !sent.lost.is_empty() {
            self.mark().await?;
            self.republish(sent.lost).await?;
            return Ok(false);
        }
        match sent.error {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Enqueues every record in order, before any delivery is awaited (one request in flight per
    /// broker keeps that order within each partition), then awaits them all. Stops at the first
    /// record the producer refuses, so nothing after it overtakes it.
    async fn send(&mut self, records: Vec<Record>) -> Sent {
        let mut deliveries = Vec::with_capacity(records.len());
        let mut error = None;
        for record in records {
            match self.enqueue(&record) {
                Ok(delivery) => deliveries.push((record.id, record.topic, delivery)),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let mut ids = Vec::with_capacity(deliveries.len());
        let mut lost = BTreeSet::new();
        let mut written = BTreeSet::new();
        for (id, topic, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(Delivery {
                    partition, offset, ..
                })) => {
                    ids.push(id);
                    if !written.contains(&topic) {
                        written.insert(topic.clone());
                    }
                    let previous = self.acked.insert((topic.clone(), partition), offset);
                    if previous.is_some_and(|before| offset <= before) {
                        lost.insert(topic);
                    }
                }
                Ok(Err((e, _))) => {
                    error.get_or_insert(RelayError::Kafka(e));
                }
                Err(_) => {
                    error.get_or_insert(RelayError::Kafka(KafkaError::Canceled));
                }
            }
        }
        if let Some(announcer) = &self.announcer {
            announcer.announce(written.iter().map(String::as_str));
        }
        if !ids.is_empty() {
            let counters = crate::metrics::backends();
            counters.outbox_published.inc_by(ids.len() as u64);
            counters.outbox_batches.inc();
            if tracing::enabled!(tracing::Level::DEBUG) {
                // The oldest event's age when Kafka took it: its ids are UUIDv7, minted when the
                // event was made, before its transaction committed.
                let oldest_ms = ids
                    .iter()
                    .filter_map(|id| uuid::Uuid::parse_str(id).ok()?.get_timestamp())
                    .map(|at| {
                        let (secs, nanos) = at.to_unix();
                        chrono::Utc::now().timestamp_millis()
                            - (secs as i64 * 1000 + i64::from(nanos / 1_000_000))
                    })
                    .max();
                tracing::debug!(events = ids.len(), ?oldest_ms, "events published");
            }
        }
        Sent { ids, error, lost }
    }

    fn mark_due(&self) -> bool {
        self.unmarked.len() >= MARK_AT
            || self
                .unmarked_since
                .is_some_and(|since| since.elapsed() >= MARK_EVERY)
    }

    /// Marks what was sent and not yet marked sent, with one update.
    async fn mark(&mut self) -> Result<(), mongodb::error::Error> {
        if self.unmarked.is_empty() {
            self.unmarked_since = None;
            return Ok(());
        }
        self.records
            .update_many(
                doc! { "_id": { "$in": &self.unmarked } },
                doc! { "$set": { "sent": true, "sent_at": bson::DateTime::now() } },
            )
            .await?;
        self.unmarked.clear();
        self.unmarked_since = None;
        Ok(())
    }

    /// The broker lost what it held of `topics`: every event of theirs sent within
    /// [`REPUBLISH_WINDOW`] is marked unsent, so the next steps publish them again, in order.
    async fn republish(&mut self, topics: BTreeSet<String>) -> Result<(), RelayError> {
        self.acked.retain(|(topic, _), _| !topics.contains(topic));
        self.recent.clear();
        self.recent_ids.clear();
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
    fn enqueue(&self, record: &Record) -> Result<DeliveryFuture, RelayError> {
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "event-id",
                value: Some(&record.id),
            })
            .insert(Header {
                key: "event-type",
                value: Some(&record.event_type),
            });
        if let Some(traceparent) = &record.traceparent {
            headers = headers.insert(Header {
                key: crate::telemetry::TRACEPARENT,
                value: Some(traceparent),
            });
        }
        self.producer
            .send_result(
                FutureRecord::to(&record.topic)
                    .key(&record.key)
                    .payload(&record.payload)
                    .headers(headers),
            )
            .map_err(|(e, _)| RelayError::Kafka(e))
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
