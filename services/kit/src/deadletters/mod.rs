//! Dead letters: the events a consumer group could not apply after its last attempt, which the
//! runner wrote to `{topic}.dlq.{group}` with the error in the headers (`kafka/lane.rs`). An admin
//! lists them, replays one — the group's own handler applies it again, exactly as the consumer
//! would, so a replay after a fix changes state once — or discards it. Each decision is recorded
//! in the service's `dead_letters` collection (who, when, the outcome) and logged under the
//! `audit` target; the topics themselves are never rewritten.
//!
//! Routes, mounted by each consuming service under its own prefix (admin only):
//! `GET /api/{service}/admin/dead-letters`,
//! `POST /api/{service}/admin/dead-letters/{id}/replay` and `…/{id}/discard`.

mod http;
mod read;

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use mongodb::{
    Collection,
    bson::{self, doc},
};
use rdkafka::consumer::BaseConsumer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storefront_events::Envelope;
use tracing::Instrument;

pub use http::{document, mount, routes};
use read::{Letter, kafka_error, parse_id, read_all, read_one};

use crate::{
    Error,
    config::KafkaConfig,
    kafka::{HandlerError, Outcome, client_config},
    mongo::is_duplicate_key,
};

/// The collection of decisions, in the service's database.
const DECISIONS: &str = "dead_letters";

/// Applies one event as the group's consumer would (its processed-event record, transaction and
/// handler): implemented by the consumer runner's shared state.
pub(crate) trait Replay: Send + Sync {
    fn replay<'a>(
        &'a self,
        event: &'a Envelope,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send + 'a>>;
}

/// One consumer group's dead letters (from [`crate::kafka::ConsumerRunner::dead_letters`]).
#[derive(Clone)]
pub struct DeadLetters {
    kafka: KafkaConfig,
    group: String,
    /// The group's dead-letter topics.
    topics: Vec<String>,
    decisions: Collection<Decision>,
    replay: Arc<dyn Replay>,
    /// One look at the topics at a time.
    reading: Arc<tokio::sync::Mutex<()>>,
}

/// What an admin decided about one dead letter.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Decision {
    #[serde(rename = "_id")]
    id: String,
    status: Status,
    by: String,
    at: bson::DateTime,
    event_id: Option<String>,
    /// A replay's outcome: `applied`, `idempotent` or `duplicate` (applied before).
    #[serde(default)]
    outcome: Option<String>,
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not dealt with yet.
    Open,
    /// A replay is running (or was cut off: another may take it over after a minute).
    Replaying,
    /// Applied again by the group's handler.
    Replayed,
    /// Left alone for good.
    Discarded,
}

/// One dead letter, as the admin sees it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DeadLetterView {
    /// `{dead-letter topic}:{partition}:{offset}`: names it in the replay and discard paths.
    pub id: String,
    /// The topic it was consumed from.
    pub topic: String,
    /// The event's id, type and key, when the message is an event at all.
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub key: Option<String>,
    /// Why the last attempt failed (the `error` header).
    pub error: String,
    /// Attempts before it was dead-lettered.
    pub attempts: Option<u32>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub status: Status,
    /// The admin (user id) who replayed or discarded it, and when.
    pub handled_by: Option<String>,
    pub handled_at: Option<DateTime<Utc>>,
    /// A replay's outcome: `applied`, `idempotent`, or `duplicate` (it had been applied before).
    pub outcome: Option<String>,
    /// The message as JSON (the event envelope), when it is JSON.
    pub message: Option<Value>,
}

/// `GET /api/{service}/admin/dead-letters`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeadLetterList {
    /// The consumer group (the service).
    pub group: String,
    /// Newest first; at most 200 a partition of each dead-letter topic.
    pub items: Vec<DeadLetterView>,
    /// How many of `items` are still open.
    pub open: usize,
}

/// How long a replay's claim holds off another replay or a discard: a claim older than this
/// was left by a replay that never finished (its service stopped), and may be taken over.
const CLAIM_FOR: Duration = Duration::from_secs(60);

impl DeadLetters {
    pub(crate) fn new(
        kafka: KafkaConfig,
        group: String,
        topics: Vec<String>,
        db: &mongodb::Database,
        replay: Arc<dyn Replay>,
    ) -> DeadLetters {
        DeadLetters {
            kafka,
            decisions: db.collection(DECISIONS),
            group,
            topics,
            replay,
            reading: Arc::default(),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Runs `read` with a reader of the dead-letter topics (never committing: no group offsets
    /// to keep), one request at a time in a service: a look costs one client and one blocking
    /// thread however many admins ask. The client is made for the look and closed after it, off
    /// the async runtime: a reused one, assigned again, took 4–8 s to fetch (against 0.2 s).
    async fn with_reader<T: Send + 'static>(
        &self,
        read: impl FnOnce(&BaseConsumer) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let _turn = self.reading.lock().await;
        let config = client_config(&self.kafka)
            .set("group.id", format!("{}.dead-letters", self.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .clone();
        tokio::task::spawn_blocking(move || {
            let reader: BaseConsumer = config.create().map_err(kafka_error)?;
            read(&reader)
        })
        .await
        .map_err(Error::internal)?
    }

    /// Every dead letter (the newest [`MAX_PER_PARTITION`] of each partition).
    async fn read(&self) -> Result<Vec<Letter>, Error> {
        let topics = self.topics.clone();
        self.with_reader(move |reader| read_all(reader, &topics))
            .await
    }

    /// One dead letter by its id, read from its place in the topic.
    async fn letter(&self, id: &str) -> Result<Letter, Error> {
        let not_found = || Error::NotFound(format!("no dead letter {id:?} in this service"));
        let (topic, partition, offset) = parse_id(id, &self.topics).ok_or_else(not_found)?;
        let topic = topic.to_owned();
        let found = self
            .with_reader(move |reader| read_one(reader, &topic, partition, offset))
            .await?;
        found.ok_or_else(not_found)
    }

    /// The decisions about `ids`.
    async fn decisions(&self, ids: Vec<String>) -> Result<HashMap<String, Decision>, Error> {
        use futures::TryStreamExt;
        let found: Vec<Decision> = self
            .decisions
            .find(doc! { "_id": { "$in": ids } })
            .await
            .map_err(mongo_error)?
            .try_collect()
            .await
            .map_err(mongo_error)?;
        Ok(found.into_iter().map(|d| (d.id.clone(), d)).collect())
    }

    async fn decision(&self, id: &str) -> Result<Option<Decision>, Error> {
        self.decisions
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_error)
    }

    pub async fn list(&self) -> Result<DeadLetterList, Error> {
        let letters = self.read().await?;
        let decisions = self
            .decisions(letters.iter().map(|l| l.id.clone()).collect())
            .await?;
        let mut items: Vec<DeadLetterView> = letters
            .iter()
            .map(|letter| letter.view(decisions.get(&letter.id)))
            .collect();
        items.sort_by_key(|item| std::cmp::Reverse(item.dead_lettered_at));
        let open = items.iter().filter(|i| i.status == Status::Open).count();
        Ok(DeadLetterList {
            group: self.group.clone(),
            items,
            open,
        })
    }

    fn decision_for(&self, letter: &Letter, status: Status, admin: &str) -> Decision {
        Decision {
            id: letter.id.clone(),
            status,
            by: admin.to_owned(),
            at: bson::DateTime::now(),
            event_id: Envelope::from_slice(&letter.payload)
                .ok()
                .map(|e| e.id.to_string()),
            outcome: None,
        }
    }

    /// Records `decision` unless one is there: the first decision about a letter wins, and a
    /// replay's claim left by a replay that never finished ([`CLAIM_FOR`]) is taken over.
    async fn claim(&self, decision: &Decision) -> Result<(), Error> {
        match self.decisions.insert_one(decision).await {
            Ok(_) => return Ok(()),
            Err(e) if !is_duplicate_key(&e) => return Err(mongo_error(e)),
            Err(_) => {}
        }
        let stale = bson::DateTime::from_millis(
            bson::DateTime::now().timestamp_millis() - CLAIM_FOR.as_millis() as i64,
        );
        let taken = self
            .decisions
            .replace_one(
                doc! { "_id": &decision.id, "status": "replaying", "at": { "$lt": stale } },
                decision,
            )
            .await
            .map_err(mongo_error)?;
        if taken.modified_count == 1 {
            return Ok(());
        }
        Err(self.already(&decision.id).await)
    }

    async fn already(&self, id: &str) -> Error {
        let said = match self.decision(id).await {
            Ok(Some(d)) => match d.status {
                Status::Replayed => "replayed already",
                Status::Discarded => "discarded already",
                Status::Replaying => "being replayed by another request",
                Status::Open => "handled already",
            },
            _ => "handled already",
        };
        Error::Conflict {
            kind: "already-handled",
            detail: format!("this dead letter was {said}"),
        }
    }

    /// Applies the dead letter again through the group's handler, and records that it was.
    /// The letter is claimed first (`replaying`), so a second replay or a discard meanwhile is
    /// refused rather than raced; a handler that fails again gives the claim back.
    pub async fn replay(&self, id: &str, admin: &str) -> Result<DeadLetterView, Error> {
        let letter = self.letter(id).await?;
        let event = Envelope::from_slice(&letter.payload).map_err(|e| Error::Conflict {
            kind: "not-replayable",
            detail: format!("the message is not an event ({e}); discard it"),
        })?;
        let claim = self.decision_for(&letter, Status::Replaying, admin);
        self.claim(&claim).await?;
        let give_back = || async {
            let mine =
                doc! { "_id": &claim.id, "status": "replaying", "by": &claim.by, "at": claim.at };
            if let Err(e) = self.decisions.delete_one(mine).await {
                tracing::warn!(group = %self.group, id, error = %e, "could not give back a replay's claim; it expires");
            }
        };
        // In the trace of what appended the event (the dead letter keeps its `traceparent`).
        let span = tracing::info_span!("replay", group = %self.group, event_id = %event.id, r#type = %event.event_type, trace_id = tracing::field::Empty);
        crate::telemetry::continue_from(&span, |name| letter.headers.get(name).map(String::as_str));
        let outcome = match self.replay.replay(&event).instrument(span).await {
            Ok(outcome) => outcome,
            Err(e) => {
                give_back().await;
                if e.is_transient() {
                    return Err(Error::Unavailable(e.to_string()));
                }
                tracing::warn!(target: "audit", group = %self.group, id, admin, error = %e, "dead letter replay failed");
                return Err(Error::Conflict {
                    kind: "replay-failed",
                    detail: format!("the handler failed again: {e}"),
                });
            }
        };
        tracing::info!(target: "audit", group = %self.group, id, admin, event_id = %event.id, outcome = outcome.label(), "dead letter replayed");
        let done = Decision {
            status: Status::Replayed,
            at: bson::DateTime::now(),
            outcome: Some(outcome.label().to_owned()),
            ..claim.clone()
        };
        self.decisions
            .replace_one(
                doc! { "_id": &claim.id, "by": &claim.by, "at": claim.at },
                &done,
            )
            .await
            .map_err(mongo_error)?;
        Ok(letter.view(Some(&done)))
    }

    /// Leaves the dead letter alone for good, and records that.
    pub async fn discard(&self, id: &str, admin: &str) -> Result<DeadLetterView, Error> {
        let letter = self.letter(id).await?;
        let decision = self.decision_for(&letter, Status::Discarded, admin);
        self.claim(&decision).await?;
        tracing::info!(target: "audit", group = %self.group, id, admin, "dead letter discarded");
        Ok(letter.view(Some(&decision)))
    }
}

fn mongo_error(e: mongodb::error::Error) -> Error {
    if crate::mongo::is_transient(&e) {
        Error::Unavailable(format!("mongodb: {e}"))
    } else {
        Error::internal(e)
    }
}
