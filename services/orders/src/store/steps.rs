//! The saga's steps on an order: each a version-guarded write with the events it publishes, in
//! one transaction.

use mongodb::{ClientSession, bson::doc};
use storefront_events::{
    Envelope, Money,
    orders::{OrderAwaitingPayment, OrderCancelled, OrderCompleted, OrderRefundDue, OrderRefunded},
};
use storefront_kit::retry_transient;
use uuid::Uuid;

use super::{OrderDoc, PaymentRecord, RefundRecord, RefundStatus, SOURCE, Store, StoreError, now};
use crate::domain::{Settlement, Transition};

/// What moved an order, and so what it publishes.
#[derive(Debug, Clone)]
pub enum Step {
    Reserved,
    Cancelled {
        reason: String,
    },
    /// payments reports money received: completed, or a refund due (see
    /// [`OrderState::settle_payment`]).
    Paid {
        payment_intent_id: String,
        amount: Money,
    },
    /// payments reports the refund done.
    Refunded,
}

pub const PAID_WHILE_PENDING: &str = "paid before its stock was held";
pub const PAID_AFTER_CANCEL: &str = "the payment arrived after the order had ended";

/// What one version of an order publishes.
#[derive(Debug, Clone, Copy)]
enum Change {
    AwaitingPayment,
    Completed,
    Cancelled,
    RefundDue,
    Refunded,
}

impl Store {
    /// Moves an order one step in its own transaction (run again if the order changed under it).
    pub async fn advance(&self, id: Uuid, step: Step) -> Result<OrderDoc, StoreError> {
        retry_transient!(
            async {
                let mut session = self.mongo.begin().await?;
                let order = self.advance_in(&mut session, id, step.clone()).await?;
                self.outbox.commit(session).await?;
                // Committed now: waiters read it at once.
                self.changes.changed(id, order.version);
                Ok::<_, StoreError>(order)
            }
            .await
        )
    }

    /// Moves an order one step inside `session` and publishes what happened. A step that changes
    /// nothing (a replayed payment) returns the order as it is.
    pub async fn advance_in(
        &self,
        session: &mut ClientSession,
        id: Uuid,
        step: Step,
    ) -> Result<OrderDoc, StoreError> {
        let current = self
            .orders
            .find_one(doc! { "_id": id.to_string() })
            .session(&mut *session)
            .await?
            .ok_or(StoreError::NotFound)?;
        let now = now();
        let mut order = current.clone();
        order.updated_at = now;
        // What to publish, one event per version.
        let mut events: Vec<Change> = Vec::new();
        match step {
            Step::Reserved => {
                order.state = current.state.reserve()?;
                events.push(Change::AwaitingPayment);
            }
            Step::Cancelled { reason } => {
                order.state = current.state.cancel()?;
                if current.is_held(now) {
                    return Err(StoreError::PaymentInProgress);
                }
                order.reason = Some(reason);
                events.push(Change::Cancelled);
            }
            Step::Paid {
                payment_intent_id,
                amount,
            } => {
                let settlement = current.state.settle_payment(current.payment.is_some());
                if settlement == Settlement::Replay {
                    return Ok(current);
                }
                order.payment = Some(PaymentRecord {
                    payment_intent_id: payment_intent_id.clone(),
                    amount: amount.clone(),
                    paid_at: now,
                });
                order.paying_until = None;
                let refund = |reason: &str| RefundRecord {
                    status: RefundStatus::Due,
                    amount: amount.clone(),
                    payment_intent_id: payment_intent_id.clone(),
                    reason: reason.to_owned(),
                    due_at: now,
                    refunded_at: None,
                };
                match settlement {
                    Settlement::Complete => {
                        order.state = current.state.complete()?;
                        events.push(Change::Completed);
                    }
                    Settlement::Refund => {
                        order.refund = Some(refund(PAID_AFTER_CANCEL));
                        events.push(Change::RefundDue);
                    }
                    Settlement::CancelAndRefund => {
                        order.state = current.state.cancel()?;
                        order.reason = Some(PAID_WHILE_PENDING.to_owned());
                        order.refund = Some(refund(PAID_WHILE_PENDING));
                        events.push(Change::Cancelled);
                        events.push(Change::RefundDue);
                    }
                    Settlement::Replay => unreachable!("returned above"),
                }
            }
            Step::Refunded => match &mut order.refund {
                Some(refund) if refund.status == RefundStatus::Due => {
                    refund.status = RefundStatus::Refunded;
                    refund.refunded_at = Some(now);
                    events.push(Change::Refunded);
                }
                Some(_) => return Ok(current),
                None => {
                    return Err(Transition {
                        from: current.state.as_str(),
                        to: "refunded",
                    }
                    .into());
                }
            },
        }
        order.version = current.version + events.len() as i64;
        let written = self
            .orders
            .replace_one(
                doc! {
                    "_id": &current.id,
                    "version": current.version,
                    "paying_until": current.paying_until,
                },
                &order,
            )
            .session(&mut *session)
            .await?;
        if written.matched_count == 0 {
            return Err(StoreError::Raced);
        }
        for (i, change) in events.into_iter().enumerate() {
            let version = (current.version + 1 + i as i64) as u64;
            self.publish(session, &order, change, version).await?;
        }
        // Waiters are told once the caller committed ([`Store::advance`], the saga's
        // `committed`): a hint before the commit only makes them read the old order again.
        Ok(order)
    }

    async fn publish(
        &self,
        session: &mut ClientSession,
        order: &OrderDoc,
        change: Change,
        version: u64,
    ) -> Result<(), StoreError> {
        let key = order.id.clone();
        let (order_id, user_id, total) = (order.uuid(), order.user(), order.total.clone());
        let at = order.updated_at.to_chrono();
        match change {
            Change::AwaitingPayment => {
                let data = OrderAwaitingPayment {
                    order_id,
                    user_id,
                    charges: order.charges(),
                    total,
                    expires_at: order.expires_at.to_chrono(),
                };
                self.emit(session, Envelope::new(SOURCE, key, version, data))
                    .await
            }
            Change::Completed => {
                let data = OrderCompleted {
                    order_id,
                    user_id,
                    charges: order.charges(),
                    total,
                    completed_at: at,
                };
                self.emit(session, Envelope::new(SOURCE, key, version, data))
                    .await
            }
            Change::Cancelled => {
                let data = OrderCancelled {
                    order_id,
                    user_id,
                    reason: order.reason.clone().unwrap_or_default(),
                    cancelled_at: at,
                };
                self.emit(session, Envelope::new(SOURCE, key, version, data))
                    .await
            }
            Change::RefundDue | Change::Refunded => {
                let Some(refund) = &order.refund else {
                    return Ok(());
                };
                if let Change::RefundDue = change {
                    let data = OrderRefundDue {
                        order_id,
                        user_id,
                        payment_intent_id: refund.payment_intent_id.clone(),
                        amount: refund.amount.clone(),
                        reason: refund.reason.clone(),
                        due_at: at,
                    };
                    self.emit(session, Envelope::new(SOURCE, key, version, data))
                        .await
                } else {
                    let data = OrderRefunded {
                        order_id,
                        user_id,
                        amount: refund.amount.clone(),
                        refunded_at: at,
                    };
                    self.emit(session, Envelope::new(SOURCE, key, version, data))
                        .await
                }
            }
        }
    }
}
