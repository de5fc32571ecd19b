//! The refund task: gives back the money orders said is due (`order.refund_due`), retrying until
//! Stripe confirms it.
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
    gateway::{Gateway, Refunded},
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
            let order = due.order();
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

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "refund sweep failed; trying again");
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = self.wake.notify.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
