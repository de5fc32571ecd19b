//! Cancels orders left unpaid past their `expires_at` (docs/saga.md, "States").
//!
//! Due times are stored on the orders, so a restart loses nothing: the next poll finds what fell
//! due meanwhile. Every replica polls; the version-guarded transition lets exactly one of them
//! cancel an order, and the others see a state that can no longer be cancelled and move on.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Step, Store, StoreError};

pub const REASON: &str = "the payment window expired";
const BATCH: i64 = 100;

pub struct Expiry {
    pub store: Store,
    pub poll: Duration,
}

impl Expiry {
    /// Cancels every order due now; returns how many this replica cancelled.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let mut cancelled = 0;
        for id in self.store.due(BATCH).await? {
            let step = Step::Cancelled {
                reason: REASON.into(),
            };
            match self.store.advance(id, step).await {
                Ok(_) => {
                    tracing::info!(order_id = %id, "order expired");
                    cancelled += 1;
                }
                // Paid, cancelled or expired by another replica in the meantime, or held for
                // payment since it was found (the next sweep after the hold looks again).
                Err(StoreError::Transition(_) | StoreError::PaymentInProgress) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(cancelled)
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "expiry sweep failed; trying again");
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
