//! The refund task: gives back the money orders said is due (`order.refund_due`), retrying until
//! Stripe confirms it. Beside it, it settles attempts nobody finished (`Refunds::settle_abandoned`).
//!
//! Due refunds are stored (`refund` on the payment record, with attempts and the next attempt's
//! time), so a restart loses none: the next sweep finds them. Each attempt first takes a lease on
//! the record, so two replicas never try one refund at once; the gateway looks for a refund an
//! earlier attempt made before it makes one, so a refund whose answer was lost is not made twice.
//! A refund Stripe has not confirmed (an error, a failed or still pending refund) is tried again
//! with a growing pause, at most five minutes, for as long as it takes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, watch};

use crate::{
    domain::Transition,
    gateway::{Gateway, Outcome, Refunded, outcome},
    store::{Store, StoreError},
};

const BATCH: i64 = 20;

/// Tells the refund task a refund fell due (the consumer, once its transaction committed).
#[derive(Clone, Default)]
pub struct Wake {
    notify: Arc<Notify>,
    due: Arc<AtomicBool>,
}

impl Wake {
    /// A refund was stored in the transaction in flight.
    pub fn stored(&self) {
        self.due.store(true, Ordering::SeqCst);
    }

    /// The transaction committed: if it stored a refund, start on it now.
    pub fn committed(&self) {
        if self.due.swap(false, Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

pub struct Refunds {
    pub store: Store,
    pub gateway: Gateway,
    /// How often to look for due refunds without being woken (retries, other replicas' work).
    pub poll: Duration,
    pub wake: Wake,
}

impl Refunds {
    /// Tries every refund due now once; returns how many Stripe confirmed.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let mut done = 0;
        for due in self.store.due_refunds(BATCH).await? {
            let order = due.id;
            let Some(payment) = self.store.take_refund(order).await? else {
                continue;
            };
            let attempts = payment.refund.as_ref().map_or(1, |r| r.attempts);
            let Some(intent) = payment.payment_intent_id.clone() else {
                tracing::error!(order_id = %order, "a refund is due but the payment has no PaymentIntent");
                self.store
                    .refund_not_yet(order, attempts, "no PaymentIntent recorded")
                    .await?;
                continue;
            };
            match self.gateway.refund(order, &intent, attempts).await {
                Ok(Refunded::Succeeded { refund_id }) => {
                    if self.store.refunded(order, &refund_id).await? {
                        tracing::warn!(order_id = %order, %refund_id, "refunded a payment for an order that had ended");
                    }
                    done += 1;
                }
                Ok(Refunded::Pending { refund_id }) => {
                    self.store
                        .refund_not_yet(
                            order,
                            attempts,
                            &format!("refund {refund_id} is pending at Stripe"),
                        )
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(order_id = %order, attempts, error = %e, "refund not confirmed; trying again later");
                    self.store
                        .refund_not_yet(order, attempts, &e.to_string())
                        .await?;
                }
            }
        }
        Ok(done)
    }

    /// Asks Stripe how each abandoned attempt ended and records it: a payment whose request died
    /// with its process after Stripe charged — and whose webhook found nobody to receive it —
    /// becomes `payment.succeeded` (orders then completes the order, or has the money refunded);
    /// a decline becomes `payment.failed`; an attempt that never reached Stripe's confirmation is
    /// failed with no event (orders' hold lapses by itself). One still waiting for the customer is
    /// left for another claim's length. Returns how many it settled.
    pub async fn settle_abandoned(&self) -> Result<usize, StoreError> {
        let mut settled = 0;
        for found in self.store.abandoned(BATCH).await? {
            let Some(payment) = self.store.take_abandoned(&found).await? else {
                continue;
            };
            let order = payment.id;
            let Some(intent_id) = payment.payment_intent_id.clone() else {
                self.store.release(order, Transition::GiveUp).await?;
                tracing::warn!(order_id = %order, "an attempt that never reached Stripe was abandoned");
                settled += 1;
                continue;
            };
            let intent = match self.gateway.retrieve(&intent_id).await {
                Ok(intent) => intent,
                Err(e) => {
                    tracing::warn!(order_id = %order, error = %e, "cannot ask Stripe how an abandoned attempt ended; asking again later");
                    self.store.release(order, Transition::AwaitAction).await?;
                    continue;
                }
            };
            match outcome(&intent) {
                Outcome::Succeeded => {
                    if self.store.succeeded(order, &intent_id).await? {
                        tracing::warn!(order_id = %order, "an abandoned attempt had been paid; recorded");
                    }
                    settled += 1;
                }
                Outcome::Failed { reason } => {
                    self.store.failed(order, &intent_id, &reason).await?;
                    settled += 1;
                }
                Outcome::RequiresAction { .. } | Outcome::Processing => {
                    self.store.release(order, Transition::AwaitAction).await?;
                }
            }
        }
        Ok(settled)
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "refund sweep failed; trying again");
            }
            if let Err(e) = self.settle_abandoned().await {
                tracing::warn!(error = %e, "settling abandoned payments failed; trying again");
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = self.wake.notify.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
