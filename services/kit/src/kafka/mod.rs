//! Kafka: client settings, topic creation, and the consumer runner every consuming service uses.
//!
//! The runner turns "at-least-once from Kafka" into "exactly-once effect": for each message it
//! opens a MongoDB transaction, records the event id in `processed_events` (unique), runs the
//! handler in that transaction and commits; a redelivered event hits the unique id and is skipped.
//! The Kafka offset is committed only after that. A handler that keeps failing is retried with
//! exponential backoff and then the message goes to `{topic}.dlq.{group}` with the error in its
//! headers, so one poison event cannot stall a partition forever.
//!
//! What it spends per message is kept to what the message needs:
//! - **ignored types cost nothing**: a handler names the event types it acts on
//!   ([`EventHandler::event_types`]); any other event is acknowledged from its `event-type` header
//!   (written by the outbox relay) with no decoding and no MongoDB command;
//! - **idempotent writes need no transaction**: a handler whose write is guarded by itself (a
//!   replica's version check, a hold that a redelivery finds gone) applies it in
//!   [`EventHandler::apply_idempotent`], without a transaction or a processed-event record;
//! - **guarded transactions need no record**: a handler whose transaction is guarded by the state
//!   it moves (orders' state machine, products' reservation per order) says so in
//!   [`EventHandler::records_processed`], and the runner skips the processed-event insert;
//! - **keys run concurrently**: messages are spread over lanes by their key (the aggregate id), so
//!   the events of one order or product are applied one at a time in Kafka's order while other
//!   keys proceed beside them. An offset is committed once every message before it in its
//!   partition is done, so a crash redelivers (harmlessly) rather than skips;
//! - **a lane that is behind batches**: a handler whose events are guarded by their state may take
//!   the events waiting in its lane together ([`EventHandler::batchable`],
//!   [`EventHandler::handle_all`]): one transaction, and one read and write of each document, for
//!   many events;
//! - **an idle consumer stops fetching**: against a broker that holds every fetch for the whole
//!   `fetch.wait.max.ms` (the local tansu), a short wait keeps latency low but costs a fetch every
//!   few milliseconds. With `KAFKA_IDLE_FETCH_INTERVAL_MS` set, a consumer that saw nothing for
//!   2 s pauses its partitions, and that often asks where they end (a list-offsets request the
//!   broker answers at once): the first one past where the consumer stands wakes it to full speed.
//!   (Resuming for a short listening window instead loses the race on a busy machine: pausing
//!   again drops what the fetch brought, and the consumer never catches up.)

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use mongodb::{
    ClientSession, Collection, IndexModel,
    bson::{self, Document, doc},
    options::IndexOptions,
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::FutureRecord,
};
use storefront_events::{Envelope, dlq_topic};
use tokio::sync::{mpsc, watch};

use crate::{
    config::KafkaConfig,
    deadletters::{DeadLetters, Replay},
    metrics,
    mongo::{Mongo, is_duplicate_key},
};

mod assignment;
mod producer;
pub mod wake;

pub use producer::{DeliveryFuture, KafkaProducer};

const PROCESSED: &str = "processed_events";
/// Processed-event records outlive any redelivery Kafka could still make.
const KEEP_PROCESSED: Duration = Duration::from_secs(30 * 24 * 3600);
/// Messages taken from Kafka and not yet done, over all lanes: beyond this the runner stops
/// reading until lanes catch up.
const MAX_IN_FLIGHT: usize = 512;
/// A consumer that saw no message for this long starts dozing (with an idle fetch interval).
const IDLE_AFTER: Duration = Duration::from_secs(2);
/// Done offsets are committed this long after the first of them, together.
const COMMIT_EVERY: Duration = Duration::from_millis(50);

/// Settings shared by producers, consumers and admin clients.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    client
}

/// A producer for the outbox relay and dead letters: acks from all replicas, one request in flight
/// per broker (so a retried batch never overtakes the next one: the order within a partition is
/// kept), bounded delivery time.
///
/// Not librdkafka's idempotent producer: its sequence numbers live in the broker's producer
/// state, and a broker that lost that state — the local tansu keeps it in memory — refuses every
/// later batch (`UnknownProducerId`) for as long as the producer lives. A duplicate that a retry
/// makes instead is harmless: consumers drop an event id they have seen.
pub fn producer(config: &KafkaConfig) -> Result<KafkaProducer, KafkaError> {
    KafkaProducer::from_config(
        client_config(config)
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            // The outbox relay's lease outlives a batch by more than this (`outbox::LEASE_RENEW_BELOW`).
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "1")
            .set("queue.buffering.max.kbytes", "16384"),
    )
}

/// Creates the topics that do not exist yet (never depends on broker auto-creation).
pub async fn ensure_topics(config: &KafkaConfig, topics: &[String]) -> Result<(), KafkaError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(config).create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|name| NewTopic::new(name, config.partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(%topic, ?code, "cannot create topic");
                });
            }
        }
    }
    Ok(())
}

/// Readiness: the broker answers a metadata request.
pub async fn ping(producer: &KafkaProducer) -> Result<(), String> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

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
    #[error("{0}")]
    Failed(String),
}

impl HandlerError {
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

/// How one consumer group consumes.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub group: String,
    pub topics: Vec<String>,
    /// Attempts before the dead-letter topic (default 5).
    pub max_attempts: u32,
    /// Pause before the second attempt; doubled each time (default 100 ms).
    pub backoff: Duration,
    /// At most this many keys applied at once, whatever `KAFKA_CONSUMER_LANES` says.
    pub max_lanes: Option<usize>,
}

impl ConsumerSettings {
    pub fn new(group: &str, topics: Vec<String>) -> Self {
        ConsumerSettings {
            group: group.to_owned(),
            topics,
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            max_lanes: None,
        }
    }

    /// For a group whose every write meets the same few documents (one counter, a handful of
    /// hot products): lanes would only abort each other's transactions (write conflicts) and
    /// run them again, so `n` (usually 1) applies them in turn instead.
    pub fn max_lanes(mut self, n: usize) -> Self {
        self.max_lanes = Some(n.max(1));
        self
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

/// Everything the lanes share.
struct Shared<H> {
    producer: KafkaProducer,
    settings: ConsumerSettings,
    mongo: Mongo,
    processed: Collection<Document>,
    handler: Arc<H>,
}

pub struct ConsumerRunner<H> {
    consumer: Arc<StreamConsumer>,
    shared: Arc<Shared<H>>,
    lanes: usize,
    idle_fetch: Option<Duration>,
    /// Where the relays announce their writes ([`wake`]), for a dozing consumer to wake at once.
    wakes: Option<redis::Client>,
    kafka: KafkaConfig,
}

/// One message on its way through a lane.
struct Delivery {
    message: OwnedMessage,
    event: Result<Envelope, String>,
    generation: u64,
}

/// A message a lane finished.
struct Done {
    topic: String,
    partition: i32,
    offset: i64,
    generation: u64,
}

impl<H: EventHandler> ConsumerRunner<H> {
    /// Subscribes the group and makes sure its dead-letter topics exist.
    pub async fn new(
        kafka: &KafkaConfig,
        settings: ConsumerSettings,
        mongo: Mongo,
        handler: Arc<H>,
    ) -> Result<Self, KafkaError> {
        let dlqs: Vec<String> = settings
            .topics
            .iter()
            .map(|t| dlq_topic(t, &settings.group))
            .collect();
        ensure_topics(kafka, &dlqs).await?;
        let settings_lanes = settings.max_lanes;
        let mut config = client_config(kafka);
        config
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000");
        if let Some(wait) = kafka.fetch_wait_max_ms {
            config.set("fetch.wait.max.ms", wait.to_string());
        }
        let consumer: StreamConsumer = config.create()?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let processed: Collection<Document> = mongo.db.collection(PROCESSED);
        let _ = processed
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "processed_at": 1 })
                    .options(IndexOptions::builder().expire_after(KEEP_PROCESSED).build())
                    .build(),
            )
            .await;
        Ok(ConsumerRunner {
            consumer: Arc::new(consumer),
            shared: Arc::new(Shared {
                producer: producer(kafka)?,
                settings,
                processed,
                mongo,
                handler,
            }),
            lanes: kafka
                .consumer_lanes
                .min(settings_lanes.unwrap_or(usize::MAX))
                .max(1),
            idle_fetch: kafka.idle_fetch_interval,
            wakes: None,
            kafka: kafka.clone(),
        })
    }

    /// Wakes a dozing consumer when a relay announces a write to one of its topics on this Redis
    /// ([`wake`]), rather than at its next look at the partitions' ends.
    pub fn woken_by(mut self, redis_url: &str) -> Result<Self, redis::RedisError> {
        self.wakes = Some(redis::Client::open(redis_url)?);
        Ok(self)
    }

    /// The group's dead letters, for an admin to list, replay (through this runner's handler)
    /// or discard.
    pub fn dead_letters(&self) -> DeadLetters {
        let settings = &self.shared.settings;
        DeadLetters::new(
            self.kafka.clone(),
            settings.group.clone(),
            settings
                .topics
                .iter()
                .map(|t| dlq_topic(t, &settings.group))
                .collect(),
            &self.shared.mongo.db,
            self.shared.clone(),
        )
    }

    /// Consumes until `stop` turns true, then lets the lanes finish the message each is on,
    /// commits what is done and closes the consumer off the async runtime (librdkafka's destroy
    /// can block).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let ConsumerRunner {
            consumer,
            shared,
            lanes,
            idle_fetch,
            wakes,
            ..
        } = self;
        let group = shared.settings.group.clone();
        tracing::info!(%group, topics = ?shared.settings.topics, lanes, "consumer started");
        let idle_gauge = metrics::backends()
            .kafka_consumer_idle
            .with_label_values(&[group.as_str()]);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut workers = Vec::with_capacity(lanes);
        let senders: Vec<mpsc::UnboundedSender<Delivery>> = (0..lanes)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                workers.push(tokio::spawn(lane(
                    shared.clone(),
                    rx,
                    done_tx.clone(),
                    stop.clone(),
                )));
                tx
            })
            .collect();
        let mut wake = match (idle_fetch, wakes) {
            (Some(_), Some(client)) => {
                Some(wake::listen(client, &shared.settings.topics, stop.clone()))
            }
            _ => None,
        };
        let watchdog = tokio::spawn(assignment::watch_assignment(
            consumer.clone(),
            group.clone(),
            shared.settings.topics.clone(),
            stop.clone(),
        ));
        let mut progress = Progress::default();
        let mut in_flight = 0usize;
        let mut last_message = Instant::now();
        // Offsets are committed at most every COMMIT_EVERY, not once per message.
        let mut commit_due: Option<tokio::time::Instant> = None;
        'consume: while !*stop.borrow() {
            if let Some(every) = idle_fetch
                && in_flight == 0
                && last_message.elapsed() >= IDLE_AFTER
            {
                commit(&consumer, &mut progress);
                commit_due = None;
                // Doze: the partitions paused (no fetches), and every `every` one cheap look at
                // their ends (a list-offsets request, never held by the broker): new events, or
                // a new assignment, wake it; so does a relay's announcement of its topics.
                // Only what is announced from now on counts: an event announced while it was
                // awake was fetched then (the announcement follows the broker's ack).
                if let Some(wake) = wake.as_mut() {
                    wake.borrow_and_update();
                }
                idle_gauge.set(1);
                tracing::debug!(%group, "consumer dozing");
                let paused = consumer.assignment().unwrap_or_default();
                let _ = consumer.pause(&paused);
                loop {
                    // Still polled meanwhile: that is what serves a rebalance, and a partition
                    // assigned since is not paused.
                    let woke = tokio::select! {
                        _ = stop.changed() => break 'consume,
                        _ = tokio::time::sleep(every) => false,
                        Ok(()) = async { wake.as_mut().expect("guarded").changed().await }, if wake.is_some() => {
                            tracing::debug!(%group, "consumer woken by an announcement");
                            true
                        }
                        message = consumer.recv() => {
                            match message {
                                Ok(message) => {
                                    dispatch(&shared, &senders, &mut progress, &message, &mut in_flight);
                                    commit_due.get_or_insert_with(|| {
                                        tokio::time::Instant::now() + COMMIT_EVERY
                                    });
                                }
                                Err(e) => tracing::warn!(error = %e, "kafka receive failed"),
                            }
                            true
                        }
                    };
                    let reassigned = consumer
                        .assignment()
                        .is_ok_and(|now| now.to_topic_map() != paused.to_topic_map());
                    if woke || reassigned {
                        tracing::debug!(%group, woke, reassigned, "consumer awake");
                        break;
                    }
                    // Off the runtime: it blocks, up to a second a partition when the broker
                    // does not answer (a dozing notifications stopped answering HTTP while the
                    // broker restarted: xtask/tests/faults.rs).
                    let (probe, partitions) = (consumer.clone(), paused.clone());
                    let unread = tokio::select! {
                        _ = stop.changed() => break 'consume,
                        unread = off_runtime("kafka-probe", move || has_unread(&probe, &partitions)) => {
                            unread.unwrap_or(true)
                        }
                    };
                    if unread {
                        tracing::debug!(%group, "consumer awake: its partitions have more");
                        break;
                    }
                }
                let _ = consumer.resume(&paused);
                let _ = consumer.resume(&consumer.assignment().unwrap_or_default());
                // Not awaited: the request in flight is what wakes the fetcher.
                let (probe, partitions) =
                    (consumer.clone(), consumer.assignment().unwrap_or_default());
                drop(off_runtime("kafka-wake", move || {
                    wake_fetcher(&probe, &partitions)
                }));
                idle_gauge.set(0);
                // Awake again for at least IDLE_AFTER.
                last_message = Instant::now();
                continue;
            }
            let due = commit_due.unwrap_or_else(|| tokio::time::Instant::now() + IDLE_AFTER);
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep_until(due), if commit_due.is_some() => {
                    commit(&consumer, &mut progress);
                    commit_due = None;
                }
                // Nothing came for IDLE_AFTER: back to the top, which starts dozing.
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(last_message + IDLE_AFTER)),
                    if idle_fetch.is_some() && in_flight == 0 => {}
                Some(done) = done_rx.recv() => {
                    progress.done(&done);
                    in_flight -= 1;
                    while let Ok(done) = done_rx.try_recv() {
                        progress.done(&done);
                        in_flight -= 1;
                    }
                    commit_due.get_or_insert_with(|| tokio::time::Instant::now() + COMMIT_EVERY);
                }
                message = consumer.recv(), if in_flight < MAX_IN_FLIGHT => {
                    last_message = Instant::now();
                    match message {
                        Ok(message) => {
                            dispatch(&shared, &senders, &mut progress, &message, &mut in_flight);
                            commit_due.get_or_insert_with(|| tokio::time::Instant::now() + COMMIT_EVERY);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka receive failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }
        idle_gauge.set(0);
        drop(senders);
        drop(done_tx);
        // A lane stuck retrying (MongoDB away) is abandoned after this: its message is redelivered.
        let _ =
            tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(workers)).await;
        while let Ok(done) = done_rx.try_recv() {
            progress.done(&done);
        }
        commit(&consumer, &mut progress);
        // The watchdog holds a handle on the consumer: it ends at the stop, after the broker
        // request it may be waiting on, so the drop below is the last one.
        let _ = watchdog.await;
        let close = off_runtime("kafka-close", move || drop(consumer));
        let _ = tokio::time::timeout(Duration::from_secs(10), close).await;
        tracing::info!(%group, "consumer stopped");
    }
}

/// Runs `f` on a thread of its own, outside tokio's blocking pool; the receiver has its answer
/// (an error if the thread could not start or `f` panicked). A blocking librdkafka call that
/// holds a handle on the consumer may make the last drop of it, and destroying a consumer waits
/// for the requests still in flight at its broker threads — well over a minute when tansu does
/// not answer one. In tokio's pool that held up the runtime's shutdown (a test that had finished
/// hung at its end, once in three runs); a thread of its own holds up nothing.
fn off_runtime<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::sync::oneshot::Receiver<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        });
    rx
}

/// Routes one message: acknowledged at once when its type is not handled, otherwise to the lane of
/// its key.
fn dispatch<H: EventHandler>(
    shared: &Shared<H>,
    lanes: &[mpsc::UnboundedSender<Delivery>],
    progress: &mut Progress,
    message: &rdkafka::message::BorrowedMessage<'_>,
    in_flight: &mut usize,
) {
    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
    let generation = progress.dispatched(topic, partition, offset);
    let handles = |event_type: &str| shared.handler.event_types().contains(&event_type);
    let declared = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == "event-type")
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    });
    if declared.as_deref().is_some_and(|t| !handles(t)) {
        ignored(shared, progress, topic, partition, offset, generation);
        return;
    }
    // No header (a producer other than the relay): the payload says what it is.
    let event =
        Envelope::from_slice(message.payload().unwrap_or_default()).map_err(|e| e.to_string());
    if let Ok(event) = &event
        && !handles(&event.event_type)
    {
        ignored(shared, progress, topic, partition, offset, generation);
        return;
    }
    let key = message
        .key()
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| partition.to_be_bytes().to_vec());
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let lane = (hasher.finish() % lanes.len() as u64) as usize;
    let delivery = Delivery {
        message: message.detach(),
        event,
        generation,
    };
    if lanes[lane].send(delivery).is_ok() {
        *in_flight += 1;
    }
}

fn ignored<H>(
    shared: &Shared<H>,
    progress: &mut Progress,
    topic: &str,
    partition: i32,
    offset: i64,
    generation: u64,
) {
    count(shared, Outcome::Ignored);
    progress.done(&Done {
        topic: topic.to_owned(),
        partition,
        offset,
        generation,
    });
}

fn count<H>(shared: &Shared<H>, outcome: Outcome) {
    metrics::backends()
        .kafka_deliveries
        .with_label_values(&[shared.settings.group.as_str(), outcome.label()])
        .inc();
}

/// Commits, for every partition still ours, the offset below which every message is done.
fn commit(consumer: &StreamConsumer, progress: &mut Progress) {
    let ready = progress.ready();
    if ready.is_empty() {
        return;
    }
    let assigned = consumer.assignment().unwrap_or_default();
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in ready {
        if assigned.find_partition(&topic, partition).is_some() {
            let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
    }
    if list.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(&list, CommitMode::Async) {
        tracing::warn!(error = %e, "offset commit failed; messages may be redelivered");
    }
}

/// Most events a lane applies in one transaction ([`EventHandler::batchable`]).
const MAX_BATCH: usize = 32;

/// One lane: its messages in the order they came, one at a time — or, for a handler that applies
/// [`EventHandler::batchable`] events together, the batchable ones of those waiting (up to
/// [`MAX_BATCH`] looked at) in one transaction, then the others in order.
async fn lane<H: EventHandler>(
    shared: Arc<Shared<H>>,
    mut deliveries: mpsc::UnboundedReceiver<Delivery>,
    done: mpsc::UnboundedSender<Done>,
    stop: watch::Receiver<bool>,
) {
    let batchable = |delivery: &Delivery| {
        delivery
            .event
            .as_ref()
            .is_ok_and(|event| shared.handler.batchable(event))
    };
    let key = |delivery: &Delivery| delivery.message.key().map(<[u8]>::to_vec);
    // Messages taken from the queue but not batched: applied after the batch, in order.
    let mut deferred: VecDeque<Delivery> = VecDeque::new();
    loop {
        let delivery = match deferred.pop_front() {
            Some(delivery) => delivery,
            None => match deliveries.recv().await {
                Some(delivery) => delivery,
                None => break,
            },
        };
        if *stop.borrow() {
            // Left for redelivery: its offset is not committed.
            continue;
        }
        let mut batch = vec![delivery];
        if batchable(&batch[0]) && deferred.is_empty() {
            // Gathers the batchable messages waiting behind, skipping past others: a key's
            // messages keep their order, since once one of a key is deferred, all later ones of
            // that key are, and the batch is applied before the deferred ones.
            let mut held_keys = Vec::new();
            while batch.len() + deferred.len() < MAX_BATCH {
                let Ok(more) = deliveries.try_recv() else {
                    break;
                };
                let k = key(&more);
                if batchable(&more) && !held_keys.contains(&k) {
                    batch.push(more);
                } else {
                    held_keys.push(k);
                    deferred.push_back(more);
                }
            }
        }
        let outcomes = if let [single] = batch.as_slice() {
            vec![shared.process(single).await]
        } else {
            shared.process_all(&batch).await
        };
        for (delivery, outcome) in batch.iter().zip(outcomes) {
            count(&shared, outcome);
            let message = &delivery.message;
            // How long after it was produced the event was done: a consumer's whole delay.
            let lag_ms = message
                .timestamp()
                .to_millis()
                .map(|at| chrono::Utc::now().timestamp_millis() - at);
            tracing::debug!(
                group = %shared.settings.group,
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                key = ?message.key().map(String::from_utf8_lossy),
                ?lag_ms,
                ?outcome,
                "message done"
            );
            let _ = done.send(Done {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                generation: delivery.generation,
            });
        }
    }
}

impl<H: EventHandler> Replay for Shared<H> {
    fn replay<'a>(
        &'a self,
        event: &'a Envelope,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send + 'a>> {
        Box::pin(self.apply(event))
    }
}

impl<H: EventHandler> Shared<H> {
    /// Applies one message: at most once in effect, dead-lettered after the last attempt.
    async fn process(&self, delivery: &Delivery) -> Outcome {
        let event = match &delivery.event {
            Ok(event) => event,
            Err(e) => return self.dead_letter(&delivery.message, e, 1).await,
        };
        let mut attempt = 1;
        let mut conflicts = 0;
        loop {
            match self.apply(event).await {
                Ok(outcome) => return outcome,
                Err(e) if e.is_transient() => {
                    conflicts += 1;
                    self.count_retry("conflict");
                    tracing::debug!(event_id = %event.id, conflicts, error = %e, "handler conflicted; running it again");
                    tokio::time::sleep(crate::mongo::retry_pause(conflicts)).await;
                }
                Err(e) if attempt >= self.settings.max_attempts => {
                    return self
                        .dead_letter(&delivery.message, &e.to_string(), attempt)
                        .await;
                }
                Err(e) => {
                    self.count_retry("failure");
                    tracing::warn!(event_id = %event.id, attempt, error = %e, "handler failed; retrying");
                    tokio::time::sleep(self.settings.backoff * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
            }
        }
    }

    fn count_retry(&self, reason: &str) {
        metrics::backends()
            .kafka_retries
            .with_label_values(&[self.settings.group.as_str(), reason])
            .inc();
    }

    async fn apply(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        if self.handler.apply_idempotent(event).await? {
            return Ok(Outcome::Idempotent);
        }
        let mut session = self.mongo.begin().await?;
        if self.handler.records_processed(event) {
            let record = doc! {
                "_id": format!("{}:{}", self.settings.group, event.id),
                "type": &event.event_type,
                "processed_at": bson::DateTime::now(),
            };
            match self
                .processed
                .insert_one(record)
                .session(&mut session)
                .await
            {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => {
                    let _ = session.abort_transaction().await;
                    return Ok(Outcome::Duplicate);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match self.handler.handle(event, &mut session).await {
            Ok(()) => {}
            Err(HandlerError::Duplicate) => {
                let _ = session.abort_transaction().await;
                return Ok(Outcome::Duplicate);
            }
            Err(e) => {
                let _ = session.abort_transaction().await;
                return Err(e);
            }
        }
        session.commit_transaction().await?;
        crate::outbox::handoff(&session);
        self.handler.committed(event);
        Ok(Outcome::Applied)
    }

    /// Applies a run of batchable messages in one transaction; when that fails for any reason
    /// (a conflict, a bad event, a lost connection), each on its own with [`Shared::process`].
    async fn process_all(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let events: Vec<&Envelope> = batch.iter().filter_map(|d| d.event.as_ref().ok()).collect();
        if events.len() == batch.len() {
            match self.apply_all(&events).await {
                Ok(()) => return vec![Outcome::Applied; batch.len()],
                Err(e) => {
                    self.count_retry("batch");
                    tracing::debug!(events = events.len(), error = %e, "batch failed; applying its events one by one");
                }
            }
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch {
            outcomes.push(self.process(delivery).await);
        }
        outcomes
    }

    async fn apply_all(&self, events: &[&Envelope]) -> Result<(), HandlerError> {
        let mut session = self.mongo.begin().await?;
        if let Err(e) = self.handler.handle_all(events, &mut session).await {
            let _ = session.abort_transaction().await;
            return Err(e);
        }
        session.commit_transaction().await?;
        crate::outbox::handoff(&session);
        for event in events {
            self.handler.committed(event);
        }
        Ok(())
    }

    async fn dead_letter(&self, message: &OwnedMessage, error: &str, attempts: u32) -> Outcome {
        let topic = dlq_topic(message.topic(), &self.settings.group);
        tracing::error!(%topic, error, attempts, "dead-lettering event");
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let attempts = attempts.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(error),
            })
            .insert(Header {
                key: "source-topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "source-partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "source-offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "attempts",
                value: Some(&attempts),
            });
        // Keep trying: losing the event is worse than holding the lane.
        loop {
            let mut record = FutureRecord::to(&topic)
                .payload(message.payload().unwrap_or_default())
                .headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => break,
                Err((e, _)) => {
                    tracing::error!(error = %e, %topic, "cannot write to the dead-letter topic; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Outcome::DeadLettered
    }
}

/// The ends (high watermarks) of `partitions`, in one list-offsets request to each leader
/// (timestamp -1 asks for the latest offset) rather than two a partition (`fetch_watermarks` asks
/// for both ends). `None` for no partition: librdkafka refuses such a request.
fn ends_of(
    consumer: &StreamConsumer,
    partitions: &TopicPartitionList,
) -> Option<KafkaResult<TopicPartitionList>> {
    if partitions.count() == 0 {
        return None;
    }
    let mut ends = partitions.clone();
    if let Err(e) = ends.set_all_offsets(Offset::End) {
        return Some(Err(e));
    }
    Some(consumer.offsets_for_times(ends, Duration::from_secs(1)))
}

/// Makes librdkafka fetch the resumed `partitions` now. A resume clears their pause at once, but
/// the thread that fetches from their leader notices only when something wakes it — else after up
/// to a second (a resumed consumer took ~490 ms to fetch against tansu, every time). A request to
/// that leader wakes it: one list-offsets, whose answer does not matter.
fn wake_fetcher(consumer: &StreamConsumer, partitions: &TopicPartitionList) {
    let _ = ends_of(consumer, partitions);
}

/// Whether a paused consumer has events to read: a partition whose end (high watermark) is past
/// where the consumer stands (its position, else its group's committed offset, else the start).
/// The group's committed offsets are asked only for a partition with no position yet. An error
/// counts as "yes" (waking costs little).
fn has_unread(consumer: &StreamConsumer, partitions: &TopicPartitionList) -> bool {
    let timeout = Duration::from_secs(1);
    // A member with no partitions (more replicas than partitions) has nothing to read.
    let Some(ends) = ends_of(consumer, partitions) else {
        return false;
    };
    let Ok(ends) = ends else {
        return true;
    };
    let at = |list: &TopicPartitionList, topic: &str, partition: i32| match list
        .find_partition(topic, partition)?
        .offset()
    {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    };
    let positions = consumer.position().unwrap_or_default();
    let mut committed: Option<TopicPartitionList> = None;
    for end in ends.elements() {
        let (topic, partition) = (end.topic(), end.partition());
        let (Ok(()), Offset::Offset(high)) = (end.error(), end.offset()) else {
            return true;
        };
        let standing = at(&positions, topic, partition).or_else(|| {
            let committed = committed.get_or_insert_with(|| {
                consumer
                    .committed_offsets(partitions.clone(), timeout)
                    .unwrap_or_default()
            });
            at(committed, topic, partition)
        });
        // Neither a position nor a commit: the group starts at the log's start, which retention
        // may have moved past 0 (asked for only then).
        let standing = match standing {
            Some(offset) => offset,
            None => match consumer.fetch_watermarks(topic, partition, timeout) {
                Ok((low, _)) => low,
                Err(_) => return true,
            },
        };
        if high > standing {
            return true;
        }
    }
    false
}

/// Which offsets of each partition are done, so only a prefix of done messages is committed.
#[derive(Default)]
struct Progress {
    partitions: HashMap<(String, i32), Partition>,
    generations: u64,
}

struct Partition {
    /// Bumped when the partition starts over at an earlier offset (a rebalance gave it back):
    /// lanes' reports for the earlier run no longer count.
    generation: u64,
    /// Taken, not yet done.
    pending: BTreeSet<i64>,
    /// One past the last offset taken.
    next: i64,
    /// The last offset committed (the next one to read).
    committed: i64,
}

impl Progress {
    /// Records that `offset` was taken; answers its generation.
    fn dispatched(&mut self, topic: &str, partition: i32, offset: i64) -> u64 {
        let generations = &mut self.generations;
        let entry = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| {
                *generations += 1;
                Partition {
                    generation: *generations,
                    pending: BTreeSet::new(),
                    next: offset,
                    committed: offset,
                }
            });
        if offset < entry.next {
            *generations += 1;
            *entry = Partition {
                generation: *generations,
                pending: BTreeSet::new(),
                next: offset,
                committed: offset,
            };
        }
        entry.pending.insert(offset);
        entry.next = offset + 1;
        entry.generation
    }

    fn done(&mut self, done: &Done) {
        if let Some(entry) = self
            .partitions
            .get_mut(&(done.topic.clone(), done.partition))
            && entry.generation == done.generation
        {
            entry.pending.remove(&done.offset);
        }
    }

    /// Partitions whose committable offset moved, with that offset.
    fn ready(&mut self) -> Vec<(String, i32, i64)> {
        let mut ready = Vec::new();
        for ((topic, partition), entry) in &mut self.partitions {
            let position = entry.pending.first().copied().unwrap_or(entry.next);
            if position > entry.committed {
                entry.committed = position;
                ready.push((topic.clone(), *partition, position));
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(offset: i64, generation: u64) -> Done {
        Done {
            topic: "t".into(),
            partition: 0,
            offset,
            generation,
        }
    }

    #[test]
    fn only_a_prefix_of_done_offsets_is_committed() {
        let mut progress = Progress::default();
        let g = progress.dispatched("t", 0, 10);
        progress.dispatched("t", 0, 11);
        progress.dispatched("t", 0, 12);
        progress.done(&done(11, g));
        progress.done(&done(12, g));
        assert!(progress.ready().is_empty(), "10 is still in flight");
        progress.done(&done(10, g));
        assert_eq!(progress.ready(), vec![("t".to_owned(), 0, 13)]);
        assert!(progress.ready().is_empty(), "nothing new");
    }

    #[test]
    fn a_partition_that_starts_over_ignores_the_earlier_run() {
        let mut progress = Progress::default();
        let first = progress.dispatched("t", 0, 10);
        progress.dispatched("t", 0, 11);
        // A rebalance handed the partition back from offset 10.
        let second = progress.dispatched("t", 0, 10);
        assert_ne!(first, second);
        progress.done(&done(11, first));
        progress.done(&done(10, first));
        assert!(progress.ready().is_empty(), "10 of the new run is not done");
        progress.done(&done(10, second));
        assert_eq!(progress.ready(), vec![("t".to_owned(), 0, 11)]);
    }
}
