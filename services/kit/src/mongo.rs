//! This service's own MongoDB database (services never share one), and the error predicates the
//! stores need.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::{
    Client, ClientSession, Collection, Database,
    bson::{Document, doc},
    error::{
        ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
    },
    event::{EventHandler, command::CommandEvent},
    options::ClientOptions,
};
use secrecy::ExposeSecret;

use crate::{config::MongoConfig, metrics};

/// A client and this service's database on it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Mongo {
    pub client: Client,
    pub db: Database,
}

impl Mongo {
    /// Connects lazily: the driver dials on first use, so a service starts (and reports not-ready)
    /// while MongoDB is still coming up.
    pub async fn connect(
        config: &MongoConfig,
        app_name: &str,
    ) -> Result<Self, mongodb::error::Error> {
        let mut options = ClientOptions::parse(config.uri.expose_secret()).await?;
        options.app_name = Some(app_name.to_owned());
        options.command_event_handler = Some(EventHandler::callback(|event: CommandEvent| {
            crate::telemetry::command_span(&event);
            count_command(event);
        }));
        // Retryable writes off unless the URI asks for them (`retryWrites=true`): every write here
        // is safe to lose an answer for — inside a transaction that is run again whole, guarded
        // by a version or state in its filter, or keyed by a unique id — so the driver's retry
        // adds nothing, while SecantusDB scans every retryable-write record on each such write
        // and slows down by the minute (docs/services/adding-a-service.md, "MongoDB writes").
        options.retry_writes.get_or_insert(false);
        options.server_selection_timeout = Some(Duration::from_secs(5));
        options.connect_timeout = Some(Duration::from_secs(5));
        let client = Client::with_options(options)?;
        let db = client.database(&config.database);
        Ok(Mongo { client, db })
    }

    /// A session with a transaction started on it.
    pub async fn begin(&self) -> Result<mongodb::ClientSession, mongodb::error::Error> {
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        crate::outbox::forget(&session);
        Ok(session)
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The collection a command names: its first field's value (`{find: "outbox"}`); "" for
/// commands on no collection (`commitTransaction: 1`).
pub(crate) fn collection(e: &mongodb::event::command::CommandStartedEvent) -> &str {
    e.command.get_str(&e.command_name).unwrap_or_default()
}

/// Counts every command the driver sends, and the ones MongoDB refused by code, on `/metrics`.
fn count_command(event: CommandEvent) {
    let counters = metrics::backends();
    match event {
        CommandEvent::Started(e) => {
            let collection = collection(&e);
            counters
                .mongodb_commands
                .with_label_values(&[e.command_name.as_str(), collection])
                .inc()
        }
        CommandEvent::Failed(e) => {
            let code = match e.failure.kind.as_ref() {
                ErrorKind::Command(c) => c.code.to_string(),
                ErrorKind::Write(WriteFailure::WriteError(w)) => w.code.to_string(),
                ErrorKind::Write(WriteFailure::WriteConcernError(w)) => w.code.to_string(),
                ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => "network".into(),
                _ => "other".into(),
            };
            counters
                .mongodb_failures
                .with_label_values(&[e.command_name.as_str(), code.as_str()])
                .inc();
        }
        _ => {}
    }
}

/// A number an aggregation computed (`$sum`, `$count`), whichever of int32, int64 or double the
/// server chose for it; 0 when the field is missing or not a number.
pub fn summed(document: &mongodb::bson::Document, field: &str) -> i64 {
    use mongodb::bson::Bson;
    match document.get(field) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) => *n as i64,
        _ => 0,
    }
}

/// A unique index refused the write (E11000).
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == 11000)),
        _ => false,
    }
}

/// One page of a list, and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Page `page` (from 1) of `per_page` documents matching `filter` in `sort`'s order, and how
/// many match in all: a count and a find.
pub async fn page<T>(
    collection: &Collection<T>,
    filter: Document,
    sort: Document,
    page: u64,
    per_page: u64,
) -> Result<Page<T>, mongodb::error::Error>
where
    T: serde::de::DeserializeOwned + Send + Sync,
{
    let total = collection.count_documents(filter.clone()).await?;
    let items = collection
        .find(filter)
        .sort(sort)
        .skip(page.saturating_sub(1) * per_page)
        .limit(i64::try_from(per_page).unwrap_or(i64::MAX))
        .await?
        .try_collect()
        .await?;
    Ok(Page { items, total })
}

/// The transaction may succeed if run again (write conflict, failover).
pub fn is_transient(error: &mongodb::error::Error) -> bool {
    error.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
}

/// Runs `updates` — each a filter and an update document or a replacement, matching at most one
/// document — as one `update` command in `session`'s transaction: one round trip for all, where
/// the driver's `update_one` takes one each (its `bulk_write` needs MongoDB 8's `bulkWrite`
/// command). Answers how many documents they matched in all; a write error fails it whole.
pub async fn update_each(
    collection: &Collection<impl Send + Sync>,
    updates: Vec<(Document, Document)>,
    session: &mut ClientSession,
) -> Result<u64, mongodb::error::Error> {
    if updates.is_empty() {
        return Ok(0);
    }
    let statements: Vec<Document> = updates
        .into_iter()
        .map(|(q, u)| doc! { "q": q, "u": u, "multi": false, "upsert": false })
        .collect();
    let reply = collection
        .client()
        .database(collection.namespace().db.as_str())
        .run_command(doc! {
            "update": collection.name(),
            "updates": statements,
            "ordered": true,
        })
        .session(&mut *session)
        .await?;
    if let Ok(errors) = reply.get_array("writeErrors")
        && !errors.is_empty()
    {
        return Err(mongodb::error::Error::custom(format!(
            "update of {}: {errors:?}",
            collection.name()
        )));
    }
    Ok(summed(&reply, "n") as u64)
}

/// How long a store keeps running a transaction again while it fails transiently (write
/// conflicts under contention, a failover). The same rule as the drivers' `withTransaction`,
/// which retries for 120 s; ours gives up sooner so a request fails before its client does.
pub const TRANSACTION_RETRY_BUDGET: Duration = Duration::from_secs(20);

/// The pause before running a transaction again: 2 ms doubling to at most 128 ms, with jitter so
/// writers that conflicted do not meet again in the same step.
pub fn retry_pause(attempt: usize) -> Duration {
    let base = 2u64 << attempt.min(6);
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(base)) as u64;
    Duration::from_millis(base / 2 + jitter)
}

/// An error that may go away if the transaction is run again.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for mongodb::error::Error {
    fn is_transient(&self) -> bool {
        is_transient(self)
    }
}

/// Evaluates a transaction body (an `async` call returning `Result<_, E: Transient>`) again,
/// with a [`retry_pause`] between, while its error is transient and [`TRANSACTION_RETRY_BUDGET`]
/// lasts. Use it inside `async` code.
#[macro_export]
macro_rules! retry_transient {
    ($body:expr) => {{
        let started = ::std::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = $body;
            match &result {
                Err(e)
                    if started.elapsed() < $crate::mongo::TRANSACTION_RETRY_BUDGET
                        && $crate::mongo::Transient::is_transient(e) =>
                {
                    ::tokio::time::sleep($crate::mongo::retry_pause(attempt)).await;
                    continue;
                }
                _ => break result,
            }
        }
    }};
}
