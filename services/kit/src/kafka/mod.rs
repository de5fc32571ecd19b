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
mod handler;
mod lane;
mod producer;
mod progress;
pub mod wake;
mod watermarks;

pub use handler::{EventHandler, HandlerError, Outcome, UntilCommitted};
use lane::{count, lane};
pub use producer::{DeliveryFuture, KafkaProducer};
use progress::{Progress, commit};
use watermarks::{has_unread, wake_fetcher};

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
