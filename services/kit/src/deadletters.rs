//! Dead letters: the events a consumer group could not apply after its last attempt, which the
//! runner wrote to `{topic}.dlq.{group}` with the error in the headers (`kafka.rs`). An admin
//! lists them, replays one — the group's own handler applies it again, exactly as the consumer
//! would, so a replay after a fix changes state once — or discards it. Each decision is recorded
//! in the service's `dead_letters` collection (who, when, the outcome) and logged under the
//! `audit` target; the topics themselves are never rewritten.
//!
//! Routes, mounted by each consuming service under its own prefix (admin only):
//! `GET /api/{service}/admin/dead-letters`,
//! `POST /api/{service}/admin/dead-letters/{id}/replay` and `…/{id}/discard`.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{FromRef, State},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use mongodb::{
    Collection,
    bson::{self, doc},
};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{BorrowedMessage, Headers},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storefront_events::Envelope;

use crate::{
    Error, Json,
    auth::{Authenticator, RequireAdmin},
    config::KafkaConfig,
    error::Path,
    kafka::{HandlerError, Outcome, client_config},
    mongo::is_duplicate_key,
    openapi::Api,
};

/// The newest dead letters read from each partition of a dead-letter topic: what one look costs is
/// bounded. (A group with more has a failure to fix before any replay.)
const MAX_PER_PARTITION: i64 = 200;
/// How long one look may read the topics.
const READ_FOR: Duration = Duration::from_secs(10);
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

/// A dead letter as read from its topic.
struct Letter {
    id: String,
    topic: String,
    key: Option<String>,
    headers: HashMap<String, String>,
    payload: Vec<u8>,
    timestamp: Option<i64>,
}

impl Letter {
    fn of(message: &BorrowedMessage<'_>) -> Letter {
        let mut headers = HashMap::new();
        if let Some(all) = message.headers() {
            for header in all.iter() {
                if let Some(value) = header.value {
                    headers.insert(
                        header.key.to_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                }
            }
        }
        Letter {
            id: format!(
                "{}:{}:{}",
                message.topic(),
                message.partition(),
                message.offset()
            ),
            topic: headers
                .get("source-topic")
                .cloned()
                .unwrap_or_else(|| message.topic().to_owned()),
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
            timestamp: message.timestamp().to_millis(),
        }
    }

    fn view(&self, decision: Option<&Decision>) -> DeadLetterView {
        let message: Option<Value> = serde_json::from_slice(&self.payload).ok();
        let envelope = Envelope::from_slice(&self.payload).ok();
        DeadLetterView {
            id: self.id.clone(),
            topic: self.topic.clone(),
            event_id: envelope.as_ref().map(|e| e.id.to_string()),
            event_type: envelope.as_ref().map(|e| e.event_type.clone()),
            key: self.key.clone(),
            error: self.headers.get("error").cloned().unwrap_or_default(),
            attempts: self.headers.get("attempts").and_then(|a| a.parse().ok()),
            dead_lettered_at: self.timestamp.and_then(DateTime::from_timestamp_millis),
            status: decision.map_or(Status::Open, |d| d.status),
            handled_by: decision.map(|d| d.by.clone()),
            handled_at: decision.map(|d| d.at.to_chrono()),
            outcome: decision.and_then(|d| d.outcome.clone()),
            message,
        }
    }
}

/// `{topic}:{partition}:{offset}` of one of `topics`, or nothing this group has.
fn parse_id<'a>(id: &'a str, topics: &[String]) -> Option<(&'a str, i32, i64)> {
    let (rest, offset) = id.rsplit_once(':')?;
    let (topic, partition) = rest.rsplit_once(':')?;
    let partition: i32 = partition.parse().ok().filter(|p| *p >= 0)?;
    let offset: i64 = offset.parse().ok().filter(|o| *o >= 0)?;
    topics
        .iter()
        .any(|t| t == topic)
        .then_some((topic, partition, offset))
}

fn kafka_error(e: KafkaError) -> Error {
    Error::Unavailable(format!("kafka: {e}"))
}

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
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// A reader of the dead-letter topics that never commits (no group offsets to keep).
    fn reader(&self) -> Result<BaseConsumer, KafkaError> {
        client_config(&self.kafka)
            .set("group.id", format!("{}.dead-letters", self.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
    }

    /// Every dead letter (the newest [`MAX_PER_PARTITION`] of each partition), read off the
    /// async runtime: librdkafka's calls block.
    async fn read(&self) -> Result<Vec<Letter>, Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking())
            .await
            .map_err(Error::internal)?
            .map_err(kafka_error)
    }

    fn read_blocking(&self) -> Result<Vec<Letter>, KafkaError> {
        let reader = self.reader()?;
        let wait = Duration::from_secs(5);
        let mut assignment = TopicPartitionList::new();
        let mut ends: HashMap<(String, i32), i64> = HashMap::new();
        for topic in &self.topics {
            let metadata = reader.fetch_metadata(Some(topic.as_str()), wait)?;
            for found in metadata.topics() {
                for partition in found.partitions() {
                    let (low, high) = reader.fetch_watermarks(topic, partition.id(), wait)?;
                    if high > low {
                        let from = low.max(high - MAX_PER_PARTITION);
                        assignment.add_partition_offset(
                            topic,
                            partition.id(),
                            Offset::Offset(from),
                        )?;
                        ends.insert((topic.clone(), partition.id()), high);
                    }
                }
            }
        }
        let mut letters = Vec::new();
        if ends.is_empty() {
            return Ok(letters);
        }
        reader.assign(&assignment)?;
        let until = Instant::now() + READ_FOR;
        // Until every partition's end is reached and a poll then finds nothing more (a broker's
        // watermark can lag what it holds).
        while Instant::now() < until {
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let place = (message.topic().to_owned(), message.partition());
                    if ends
                        .get(&place)
                        .is_some_and(|end| message.offset() + 1 >= *end)
                    {
                        ends.remove(&place);
                    }
                    letters.push(Letter::of(&message));
                }
                Some(Err(e)) => return Err(e),
                None if ends.is_empty() => break,
                None => {}
            }
        }
        Ok(letters)
    }

    /// One dead letter by its id, read from its place in the topic.
    async fn letter(&self, id: &str) -> Result<Letter, Error> {
        let not_found = || Error::NotFound(format!("no dead letter {id:?} in this service"));
        let (topic, partition, offset) = parse_id(id, &self.topics).ok_or_else(not_found)?;
        let (topic, this) = (topic.to_owned(), self.clone());
        let found = tokio::task::spawn_blocking(move || -> Result<Option<Letter>, KafkaError> {
            let reader = this.reader()?;
            let (low, high) = reader.fetch_watermarks(&topic, partition, Duration::from_secs(5))?;
            if offset < low || offset >= high {
                return Ok(None);
            }
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            reader.assign(&assignment)?;
            let until = Instant::now() + READ_FOR;
            while Instant::now() < until {
                match reader.poll(Duration::from_millis(200)) {
                    Some(Ok(message)) if message.offset() == offset => {
                        return Ok(Some(Letter::of(&message)));
                    }
                    Some(Ok(message)) if message.offset() > offset => return Ok(None),
                    Some(Err(e)) => return Err(e),
                    _ => {}
                }
            }
            Ok(None)
        })
        .await
        .map_err(Error::internal)?
        .map_err(kafka_error)?;
        found.ok_or_else(not_found)
    }

    async fn decisions(&self) -> Result<HashMap<String, Decision>, Error> {
        use futures::TryStreamExt;
        let found: Vec<Decision> = self
            .decisions
            .find(doc! {})
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
        let decisions = self.decisions().await?;
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

    /// Records `status` for `letter`; a decision already made is a 409 saying which.
    async fn decide(
        &self,
        letter: &Letter,
        status: Status,
        admin: &str,
        outcome: Option<&str>,
    ) -> Result<DeadLetterView, Error> {
        let decision = Decision {
            id: letter.id.clone(),
            status,
            by: admin.to_owned(),
            at: bson::DateTime::now(),
            event_id: Envelope::from_slice(&letter.payload)
                .ok()
                .map(|e| e.id.to_string()),
            outcome: outcome.map(str::to_owned),
        };
        match self.decisions.insert_one(&decision).await {
            Ok(_) => Ok(letter.view(Some(&decision))),
            Err(e) if is_duplicate_key(&e) => Err(self.already(&letter.id).await),
            Err(e) => Err(mongo_error(e)),
        }
    }

    async fn already(&self, id: &str) -> Error {
        let said = match self.decision(id).await {
            Ok(Some(d)) => match d.status {
                Status::Replayed => "replayed",
                Status::Discarded => "discarded",
                Status::Open => "handled",
            },
            _ => "handled",
        };
        Error::Conflict {
            kind: "already-handled",
            detail: format!("this dead letter was {said} already"),
        }
    }

    /// Applies the dead letter again through the group's handler, and records that it was.
    pub async fn replay(&self, id: &str, admin: &str) -> Result<DeadLetterView, Error> {
        let letter = self.letter(id).await?;
        if self.decision(id).await?.is_some() {
            return Err(self.already(id).await);
        }
        let event = Envelope::from_slice(&letter.payload).map_err(|e| Error::Conflict {
            kind: "not-replayable",
            detail: format!("the message is not an event ({e}); discard it"),
        })?;
        let outcome = match self.replay.replay(&event).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_transient() => return Err(Error::Unavailable(e.to_string())),
            Err(e) => {
                tracing::warn!(target: "audit", group = %self.group, id, admin, error = %e, "dead letter replay failed");
                return Err(Error::Conflict {
                    kind: "replay-failed",
                    detail: format!("the handler failed again: {e}"),
                });
            }
        };
        tracing::info!(target: "audit", group = %self.group, id, admin, event_id = %event.id, outcome = outcome.label(), "dead letter replayed");
        match self
            .decide(&letter, Status::Replayed, admin, Some(outcome.label()))
            .await
        {
            // Another admin replayed it at the same moment: the handler applied it once.
            Err(Error::Conflict { .. }) => Ok(letter.view(self.decision(id).await?.as_ref())),
            other => other,
        }
    }

    /// Leaves the dead letter alone for good, and records that.
    pub async fn discard(&self, id: &str, admin: &str) -> Result<DeadLetterView, Error> {
        let letter = self.letter(id).await?;
        let view = self.decide(&letter, Status::Discarded, admin, None).await?;
        tracing::info!(target: "audit", group = %self.group, id, admin, "dead letter discarded");
        Ok(view)
    }
}

fn mongo_error(e: mongodb::error::Error) -> Error {
    if crate::mongo::is_transient(&e) {
        Error::Unavailable(format!("mongodb: {e}"))
    } else {
        Error::internal(e)
    }
}

#[derive(Clone)]
struct RouteState {
    dead_letters: DeadLetters,
    authenticator: Arc<Authenticator>,
}

impl FromRef<RouteState> for Arc<Authenticator> {
    fn from_ref(state: &RouteState) -> Self {
        state.authenticator.clone()
    }
}

async fn list(
    State(state): State<RouteState>,
    RequireAdmin(_): RequireAdmin,
) -> Result<Json<DeadLetterList>, Error> {
    Ok(Json(state.dead_letters.list().await?))
}

async fn replay(
    State(state): State<RouteState>,
    RequireAdmin(admin): RequireAdmin,
    Path(id): Path<String>,
) -> Result<Json<DeadLetterView>, Error> {
    Ok(Json(
        state
            .dead_letters
            .replay(&id, &admin.sub.to_string())
            .await?,
    ))
}

async fn discard(
    State(state): State<RouteState>,
    RequireAdmin(admin): RequireAdmin,
    Path(id): Path<String>,
) -> Result<Json<DeadLetterView>, Error> {
    Ok(Json(
        state
            .dead_letters
            .discard(&id, &admin.sub.to_string())
            .await?,
    ))
}

/// The dead-letter routes under `/api/{prefix}/admin/dead-letters`, to merge into a service's
/// router. A service that does not consume (`CONSUME_EVENTS=false`) has none to mount.
pub fn routes(
    prefix: &str,
    dead_letters: DeadLetters,
    authenticator: Arc<Authenticator>,
) -> Router {
    let base = format!("/api/{prefix}/admin/dead-letters");
    Router::new()
        .route(&base, get(list))
        .route(&format!("{base}/{{id}}/replay"), post(replay))
        .route(&format!("{base}/{{id}}/discard"), post(discard))
        .with_state(RouteState {
            dead_letters,
            authenticator,
        })
}

/// `routes` with the dead-letter routes of `consumer`'s group under `/api/{prefix}/`, when the
/// service consumes at all.
pub fn mount<H: crate::kafka::EventHandler>(
    routes: Router,
    prefix: &str,
    consumer: Option<&crate::kafka::ConsumerRunner<H>>,
    authenticator: &Arc<Authenticator>,
) -> Router {
    match consumer {
        Some(consumer) => routes.merge(self::routes(
            prefix,
            consumer.dead_letters(),
            authenticator.clone(),
        )),
        None => routes,
    }
}

/// The dead-letter operations in a service's OpenAPI document.
pub fn document(api: &mut Api, prefix: &str) {
    let base = format!("/api/{prefix}/admin/dead-letters");
    api.operation(
        "GET",
        &base,
        &format!("list{}DeadLetters", capitalised(prefix)),
        "Dead letters (admin)",
        |op| {
            op.admin()
                .describe(
                    "The events this service's consumer group could not apply after its last \
                     attempt, newest first, each with the error and whether an admin replayed \
                     or discarded it (docs/events/README.md, \"Dead letters\").",
                )
                .problem(403, "Not an administrator (`admin-only`).")
                .ok::<DeadLetterList>(200, "The group's dead letters");
        },
    )
    .operation(
        "POST",
        &format!("{base}/{{id}}/replay"),
        &format!("replay{}DeadLetter", capitalised(prefix)),
        "Apply a dead letter again (admin)",
        |op| {
            op.admin()
                .describe(
                    "Runs the group's handler on the event again, as its consumer would (once \
                     in effect), and records the replay. No body.",
                )
                .path("id", "The dead letter: `{topic}:{partition}:{offset}`")
                .ok::<DeadLetterView>(200, "Replayed")
                .problem(403, "Not an administrator (`admin-only`).")
                .problem(404, "No such dead letter in this service.")
                .problem(
                    409,
                    "Replayed or discarded already (`already-handled`), not an event \
                     (`not-replayable`), or the handler failed again (`replay-failed`, with \
                     its error).",
                );
        },
    )
    .operation(
        "POST",
        &format!("{base}/{{id}}/discard"),
        &format!("discard{}DeadLetter", capitalised(prefix)),
        "Leave a dead letter alone for good (admin)",
        |op| {
            op.admin()
                .describe("Records that the event is not to be applied. No body.")
                .path("id", "The dead letter: `{topic}:{partition}:{offset}`")
                .ok::<DeadLetterView>(200, "Discarded")
                .problem(403, "Not an administrator (`admin-only`).")
                .problem(404, "No such dead letter in this service.")
                .problem(409, "Replayed or discarded already (`already-handled`).");
        },
    );
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_a_place_in_one_of_the_groups_topics() {
        let topics = vec!["shop.orders.dlq.cart".to_owned()];
        assert_eq!(
            parse_id("shop.orders.dlq.cart:2:17", &topics),
            Some(("shop.orders.dlq.cart", 2, 17))
        );
        for id in [
            "shop.orders.dlq.payments:2:17",
            "shop.orders.dlq.cart:2",
            "shop.orders.dlq.cart:-1:17",
            "shop.orders.dlq.cart:0:x",
            "shop.orders.dlq.cart:0:-3",
            "",
        ] {
            assert_eq!(parse_id(id, &topics), None, "{id}");
        }
    }

    #[test]
    fn operation_ids_name_the_service() {
        assert_eq!(capitalised("orders"), "Orders");
        assert_eq!(capitalised(""), "");
    }
}
