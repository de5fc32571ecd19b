//! What a commit hands to its outbox's relay: records appended in a transaction wait, by
//! session, until it commits; then they go to the queue of the relay of their outbox.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
};

use mongodb::ClientSession;
use tokio::sync::Notify;

use super::Record;

/// Records handed to a relay that does not keep up (or to an outbox no relay runs for) beyond
/// this many are left to its recovery reads, so memory stays bounded.
const QUEUE_LIMIT: usize = 10_000;

/// What committed transactions handed to one outbox's relay.
#[derive(Default)]
pub(super) struct Queue {
    state: Mutex<QueueState>,
    /// Notified at every push: the relay sends at once.
    pub(super) wake: Notify,
}

#[derive(Default)]
struct QueueState {
    records: VecDeque<Record>,
    /// Records were left out (the queue was full): the relay must read the database, in order,
    /// before it sends anything handed to it again.
    overflowed: bool,
}

impl Queue {
    pub(super) fn push(&self, records: Vec<Record>) {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.overflowed || state.records.len() + records.len() > QUEUE_LIMIT {
                state.overflowed = true;
            } else {
                state.records.extend(records);
            }
        }
        self.wake.notify_one();
    }

    /// Up to `limit` records in commit order; `None` when some were left out and the database
    /// must be read instead (the queue is emptied then).
    pub(super) fn take(&self, limit: usize) -> Option<Vec<Record>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.overflowed {
            state.overflowed = false;
            state.records.clear();
            return None;
        }
        let n = limit.min(state.records.len());
        Some(state.records.drain(..n).collect())
    }

    /// Drops everything handed off so far: a recovery read is about to find it.
    pub(super) fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.overflowed = false;
        state.records.clear();
    }

    pub(super) fn is_empty(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.records.is_empty() && !state.overflowed
    }
}

/// Records appended in transactions that have not committed yet, by session (its `lsid`), each
/// with the queue it goes to once the transaction commits. Process-wide because a transaction
/// can append to any outbox and is committed by whoever began it (a service's store, the
/// consumer runner); [`crate::mongo::Mongo::begin`] forgets what an earlier transaction of the
/// same server session left (one that aborted, or whose commit failed).
static STAGED: LazyLock<Mutex<Staged>> = LazyLock::new(Default::default);

/// Session → when its open transaction first appended, what it appended, and where each goes.
type Staged = HashMap<String, (Instant, Vec<(Arc<Queue>, Record)>)>;
/// What a transaction staged is forgotten after this long uncommitted: the driver may drop a
/// session (a network error) rather than reuse it, and its records must not stay forever.
const STAGED_FOR: Duration = Duration::from_secs(300);

fn staged() -> std::sync::MutexGuard<'static, Staged> {
    STAGED.lock().unwrap_or_else(|e| e.into_inner())
}

fn session_key(session: &ClientSession) -> String {
    session.id().to_string()
}

/// Keeps `records`, appended in the open transaction on `session`, for `queue` until it commits.
pub(super) fn stage(
    session: &ClientSession,
    queue: &Arc<Queue>,
    records: impl IntoIterator<Item = Record>,
) {
    let mut staged = staged();
    let entry = staged
        .entry(session_key(session))
        .or_insert_with(|| (Instant::now(), Vec::new()));
    entry
        .1
        .extend(records.into_iter().map(|record| (queue.clone(), record)));
}

/// A transaction begins on `session`: whatever an earlier one on it appended and did not commit
/// is not to be sent.
pub(crate) fn forget(session: &ClientSession) {
    let mut staged = staged();
    staged.remove(&session_key(session));
    staged.retain(|_, (since, _)| since.elapsed() < STAGED_FOR);
}

/// Hands what the transaction just committed on `session` appended to the relays of its outboxes.
/// [`Outbox::commit`](super::Outbox::commit) calls it; call it after committing a transaction in any other way. A
/// record never handed off (a commit whose outcome was unknown) waits for the recovery read.
pub fn handoff(session: &ClientSession) {
    let Some((_, records)) = staged().remove(&session_key(session)) else {
        return;
    };
    let mut by_queue: Vec<(Arc<Queue>, Vec<Record>)> = Vec::new();
    for (queue, record) in records {
        match by_queue.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &queue)) {
            Some((_, records)) => records.push(record),
            None => by_queue.push((queue, vec![record])),
        }
    }
    for (queue, records) in by_queue {
        queue.push(records);
    }
}
