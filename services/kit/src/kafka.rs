//! Kafka: client settings, topic creation, and the consumer runner every consuming service uses.
//!
//! The runner turns "at-least-once from Kafka" into "exactly-once effect": for each message it
//! opens a MongoDB transaction, records the event id in `processed_events` (unique), runs the
//! handler in that transaction and commits; a redelivered event hits the unique id and is skipped.
//! The Kafka offset is committed only after that. A handler that keeps failing is retried with
//! exponential backoff and then the message goes to `{topic}.dlq.{group}` with the error in its
//! headers, so one poison event cannot stall a partition forever.

use std::{future::Future, sync::Arc, time::Duration};

use mongodb::{
    ClientSession, Collection, IndexModel,
    bson::{self, Document, doc},
    options::IndexOptions,
};
use rdkafka::{
    ClientConfig, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};
use storefront_events::{Envelope, dlq_topic};
use tokio::sync::watch;

use crate::{
    config::KafkaConfig,
    mongo::{Mongo, is_duplicate_key},
};

const PROCESSED: &str = "processed_events";
/// Processed-event records outlive any redelivery Kafka could still make.
const KEEP_PROCESSED: Duration = Duration::from_secs(30 * 24 * 3600);

/// Settings shared by producers, consumers and admin clients.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    client
}

/// A producer for the outbox relay: acks from all replicas, idempotent, bounded delivery time.
pub fn producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    client_config(config)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "15000")
        .set("linger.ms", "1")
        .set("queue.buffering.max.kbytes", "16384")
        .create()
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
pub async fn ping(producer: &FutureProducer) -> Result<(), String> {
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
            HandlerError::Failed(_) => false,
        }
    }
}

/// What a consuming service implements: apply one event inside the given transaction.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called after the transaction of a successful [`EventHandler::handle`] committed: a handler
    /// that appended to an outbox wakes its relay here.
    fn committed(&self) {}
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
}

impl ConsumerSettings {
    pub fn new(group: &str, topics: Vec<String>) -> Self {
        ConsumerSettings {
            group: group.to_owned(),
            topics,
            max_attempts: 5,
            backoff: Duration::from_millis(100),
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
}

impl Outcome {
    /// The `outcome` label of `storefront_kafka_deliveries_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

pub struct ConsumerRunner<H> {
    consumer: StreamConsumer,
    producer: FutureProducer,
    settings: ConsumerSettings,
    mongo: Mongo,
    processed: Collection<Document>,
    handler: Arc<H>,
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
        let consumer: StreamConsumer = client_config(kafka)
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string())
            .create()?;
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
            consumer,
            producer: producer(kafka)?,
            settings,
            processed,
            mongo,
            handler,
        })
    }

    /// Consumes until `stop` turns true, then closes the consumer off the async runtime
    /// (librdkafka's destroy can block).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(group = %self.settings.group, topics = ?self.settings.topics, "consumer started");
        loop {
            let message = tokio::select! {
                _ = stop.changed() => break,
                message = self.consumer.recv() => message,
            };
            match message {
                Ok(message) => {
                    let outcome = self.process(&message).await;
                    crate::metrics::backends()
                        .kafka_deliveries
                        .with_label_values(&[self.settings.group.as_str(), outcome.label()])
                        .inc();
                    tracing::debug!(?outcome, offset = message.offset(), "message done");
                    if let Err(e) = self.consumer.commit_message(&message, CommitMode::Async) {
                        tracing::warn!(error = %e, "offset commit failed; the message may be redelivered");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        let ConsumerRunner { consumer, .. } = self;
        let close = tokio::task::spawn_blocking(move || drop(consumer));
        let _ = tokio::time::timeout(Duration::from_secs(10), close).await;
        tracing::info!("consumer stopped");
    }

    /// Applies one message: at most once in effect, dead-lettered after the last attempt.
    pub async fn process(&self, message: &BorrowedMessage<'_>) -> Outcome {
        let payload = message.payload().unwrap_or_default();
        let event = match Envelope::from_slice(payload) {
            Ok(event) => event,
            Err(e) => {
                return self
                    .dead_letter(message, &format!("malformed event: {e}"), 1)
                    .await;
            }
        };
        let mut attempt = 1;
        let mut conflicts = 0;
        loop {
            match self.apply(&event).await {
                Ok(outcome) => return outcome,
                Err(e) if e.is_transient() => {
                    conflicts += 1;
                    self.count_retry("conflict");
                    tracing::debug!(event_id = %event.id, conflicts, error = %e, "handler conflicted; running it again");
                    tokio::time::sleep(crate::mongo::retry_pause(conflicts)).await;
                }
                Err(e) if attempt >= self.settings.max_attempts => {
                    return self.dead_letter(message, &e.to_string(), attempt).await;
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
        crate::metrics::backends()
            .kafka_retries
            .with_label_values(&[self.settings.group.as_str(), reason])
            .inc();
    }

    async fn apply(&self, event: &Envelope) -> Result<Outcome, HandlerError> {
        let mut session = self.mongo.begin().await?;
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
        if let Err(e) = self.handler.handle(event, &mut session).await {
            let _ = session.abort_transaction().await;
            return Err(e);
        }
        session.commit_transaction().await?;
        self.handler.committed();
        Ok(Outcome::Applied)
    }

    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        error: &str,
        attempts: u32,
    ) -> Outcome {
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
        // Keep trying: losing the event is worse than holding the partition.
        loop {
            let mut record = FutureRecord::to(&topic)
                .payload(message.payload().unwrap_or_default())
                .headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            match self
                .producer
                .send(record, Timeout::After(Duration::from_secs(10)))
                .await
            {
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
