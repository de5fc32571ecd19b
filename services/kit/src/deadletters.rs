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
/// How long one look may read the topics: with the metadata and offsets before it, within the
/// 15 s a request may take.
const READ_FOR: Duration = Duration::from_secs(8);
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
            handled_at: decision
                .and_then(|d| DateTime::from_timestamp_millis(d.at.timestamp_millis())),
            outcome: decision.and_then(|d| d.outcome.clone()),
            message,
        }
    }
}

/// `{topic}:{partition}:{offset}` of one of `topics`, written as the list writes it (so one
/// dead letter has one id: `+5` or `005` name nothing), or nothing this group has.
fn parse_id<'a>(id: &'a str, topics: &[String]) -> Option<(&'a str, i32, i64)> {
    let (rest, offset) = id.rsplit_once(':')?;
    let (topic, partition) = rest.rsplit_once(':')?;
    let partition: i32 = partition.parse().ok().filter(|p| *p >= 0)?;
    let offset: i64 = offset.parse().ok().filter(|o| *o >= 0)?;
    let canonical = format!("{topic}:{partition}:{offset}") == id;
    (canonical && topics.iter().any(|t| t == topic)).then_some((topic, partition, offset))
}

fn kafka_error(e: KafkaError) -> Error {
    Error::Unavailable(format!("kafka: {e}"))
}

fn too_slow() -> Error {
    Error::Unavailable("kafka did not deliver the dead-letter topics in time; try again".into())
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
        let outcome = match self.replay.replay(&event).await {
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

/// Reads every partition of `topics` from its newest [`MAX_PER_PARTITION`] letters to its end,
/// within [`READ_FOR`]; a topic that does not deliver in time is a 503, not a short list.
fn read_all(reader: &BaseConsumer, topics: &[String]) -> Result<Vec<Letter>, Error> {
    let wait = Duration::from_secs(3);
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let metadata = reader
            .fetch_metadata(Some(topic.as_str()), wait)
            .map_err(kafka_error)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                let (low, high) = reader
                    .fetch_watermarks(topic, partition.id(), wait)
                    .map_err(kafka_error)?;
                if high > low {
                    let from = low.max(high - MAX_PER_PARTITION);
                    assignment
                        .add_partition_offset(topic, partition.id(), Offset::Offset(from))
                        .map_err(kafka_error)?;
                    ends.insert((topic.clone(), partition.id()), high);
                }
            }
        }
    }
    let mut letters = Vec::new();
    if ends.is_empty() {
        return Ok(letters);
    }
    reader.assign(&assignment).map_err(kafka_error)?;
    let until = Instant::now() + READ_FOR;
    // Until every partition's end is reached and a poll then finds nothing more (a broker's
    // watermark can lag what it holds).
    loop {
        if Instant::now() >= until {
            return Err(too_slow());
        }
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
            Some(Err(e)) => return Err(kafka_error(e)),
            None if ends.is_empty() => return Ok(letters),
            None => {}
        }
    }
}

/// The letter at `offset` of `topic`'s `partition`; `None` when there is none there.
fn read_one(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<Letter>, Error> {
    let (low, high) = reader
        .fetch_watermarks(topic, partition, Duration::from_secs(3))
        .map_err(kafka_error)?;
    if offset < low || offset >= high {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(kafka_error)?;
    reader.assign(&assignment).map_err(kafka_error)?;
    let until = Instant::now() + READ_FOR;
    while Instant::now() < until {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == offset => {
                return Ok(Some(Letter::of(&message)));
            }
            Some(Ok(message)) if message.offset() > offset => return Ok(None),
            Some(Err(e)) => return Err(kafka_error(e)),
            _ => {}
        }
    }
    Err(too_slow())
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

/// `POST …/{id}/replay` and `…/{id}/discard`.
async fn decide(
    State(state): State<RouteState>,
    RequireAdmin(admin): RequireAdmin,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<DeadLetterView>, Error> {
    let admin = admin.sub.to_string();
    let letters = &state.dead_letters;
    Ok(Json(match action.as_str() {
        "replay" => letters.replay(&id, &admin).await?,
        "discard" => letters.discard(&id, &admin).await?,
        _ => {
            return Err(Error::NotFound(format!(
                "no action {action:?}: replay or discard"
            )));
        }
    }))
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
        .route(&format!("{base}/{{id}}/{{action}}"), post(decide))
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
                .problem(
                    404,
                    "This replica does not consume events (`CONSUME_EVENTS=false`): it has no \
                     dead letters to show.",
                )
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
                    "Replayed, being replayed or discarded already (`already-handled`), not an \
                     event (`not-replayable`), or the handler failed again (`replay-failed`, \
                     with its error).",
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
                .problem(
                    409,
                    "Replayed, being replayed or discarded already (`already-handled`).",
                );
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
            // One letter, one id: what the list wrote, not another spelling of its numbers.
            "shop.orders.dlq.cart:2:+17",
            "shop.orders.dlq.cart:02:17",
            "shop.orders.dlq.cart:2:017",
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
