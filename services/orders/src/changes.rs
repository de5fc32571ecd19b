//! Waiting for an order to change, without polling MongoDB in a loop.
//!
//! Every write of an order tells [`Changes`] its id and new version. A request that waits (the
//! long-poll `GET /api/orders/{id}`, payments' hold that waits for stock to be reserved) listens,
//! and reads the order again only when *its* order moved. The hint can come a moment before the
//! transaction that made it commits, so a read that still shows the old version is tried again a
//! few times shortly after. A write made by another replica of orders sends no hint here: the
//! waiter also reads again every `recheck` (docs/api/orders.md says how long a change can take to
//! show then).

use std::time::Duration;
use storefront_events::OrderId;

use tokio::{
    sync::broadcast::{self, error::RecvError},
    time::Instant,
};

/// How many hints can queue for a slow waiter before it reads again anyway.
const BACKLOG: usize = 4096;
/// Re-reads after a hint whose write had not committed yet.
const COMMIT_LAG: [u64; 5] = [2, 5, 10, 20, 50];

#[derive(Clone)]
pub struct Changes {
    sender: broadcast::Sender<(OrderId, i64)>,
    recheck: Duration,
}

impl Changes {
    pub fn new(recheck: Duration) -> Self {
        Changes {
            sender: broadcast::channel(BACKLOG).0,
            recheck,
        }
    }

    /// Order `id` was written at `version` (maybe not committed yet).
    pub fn changed(&self, id: OrderId, version: i64) {
        let _ = self.sender.send((id, version));
    }

    /// Waits until `read` gives a value `done` accepts, or `deadline` passes; returns the last
    /// value read. `read` runs once at first, then only after this order changed (or every
    /// `recheck`).
    pub async fn wait<T, E, R, Fut>(
        &self,
        id: OrderId,
        deadline: Instant,
        read: R,
        version: impl Fn(&T) -> i64,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, E>
    where
        R: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // Listen before the first read, so a change between the read and the wait is not missed.
        let mut hints = self.sender.subscribe();
        let mut current = read().await?;
        loop {
            if done(&current) || Instant::now() >= deadline {
                return Ok(current);
            }
            let recheck = (Instant::now() + self.recheck).min(deadline);
            let target = loop {
                tokio::select! {
                    hint = hints.recv() => match hint {
                        Ok((changed, v)) if changed == id && v > version(&current) => break Some(v),
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => break None,
                        Err(RecvError::Closed) => {
                            tokio::time::sleep_until(recheck).await;
                            break None;
                        }
                    },
                    _ = tokio::time::sleep_until(recheck) => break None,
                }
            };
            current = read().await?;
            if let Some(target) = target {
                for pause in COMMIT_LAG {
                    if version(&current) >= target || Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    current = read().await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_on_its_own_order_only() {
        let changes = Changes::new(Duration::from_secs(60));
        let (mine, other) = (OrderId::new(), OrderId::new());
        let stored = Arc::new(AtomicI64::new(1));
        let reads = Arc::new(AtomicI64::new(0));
        let waiter = {
            let (changes, stored, reads) = (changes.clone(), stored.clone(), reads.clone());
            tokio::spawn(async move {
                changes
                    .wait(
                        mine,
                        Instant::now() + Duration::from_secs(5),
                        || {
                            reads.fetch_add(1, Ordering::SeqCst);
                            let v = stored.load(Ordering::SeqCst);
                            async move { Ok::<_, ()>(v) }
                        },
                        |v| *v,
                        |v| *v >= 2,
                    )
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        for v in 2..50 {
            changes.changed(other, v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "others' changes cost no read"
        );
        // The hint comes before the commit: the waiter reads again until it sees it.
        changes.changed(mine, 2);
        tokio::time::sleep(Duration::from_millis(3)).await;
        stored.store(2, Ordering::SeqCst);
        assert_eq!(waiter.await.unwrap(), Ok(2));
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_its_deadline_with_what_it_has() {
        let changes = Changes::new(Duration::from_millis(20));
        let started = Instant::now();
        let got = changes
            .wait(
                OrderId::new(),
                started + Duration::from_millis(100),
                || async { Ok::<_, ()>(1) },
                |v| *v,
                |v| *v >= 2,
            )
            .await;
        assert_eq!(got, Ok(1));
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
