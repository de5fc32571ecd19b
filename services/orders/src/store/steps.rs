//! The saga's steps on an order: each a version-guarded write with the events it publishes, in
//! one transaction.

use std::collections::HashMap;
use storefront_events::OrderId;

use futures::TryStreamExt;
use mongodb::{
    ClientSession,
    bson::{self, Document, doc},
};
use storefront_events::{
    Envelope, Money,
    orders::{OrderAwaitingPayment, OrderCancelled, OrderCompleted, OrderRefundDue, OrderRefunded},
};
use storefront_kit::{mongo, outbox::Encoded, retry_transient};

use super::{OrderDoc, PaymentRecord, RefundRecord, RefundStatus, SOURCE, Store, StoreError, now};
use crate::domain::{Lifecycle, Settlement, Transition};

/// What moved an order, and so what it publishes.
#[derive(Debug, Clone)]
pub enum Step {
    Reserved,
    Cancelled {
        reason: String,
    },
    /// payments reports money received: completed, or a refund due (see
    /// [`crate::domain::Lifecycle::settle_payment`]).
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
    pub async fn advance(&self, id: OrderId, step: Step) -> Result<OrderDoc, StoreError> {
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
        id: OrderId,
        step: Step,
    ) -> Result<OrderDoc, StoreError> {
        let current = self
            .orders
            .find_one(doc! { "_id": id.to_string() })
            .session(&mut *session)
            .await?
            .ok_or(StoreError::NotFound)?;
        let Some((order, changes)) = moved(&current, step, now())? else {
            return Ok(current);
        };
        let written = self
            .orders
            .replace_one(guard(&current), &order)
            .session(&mut *session)
            .await?;
        if written.matched_count == 0 {
            return Err(StoreError::Raced);
        }
        let records = self.encode_all(&order, current.version, &changes)?;
        self.outbox.append_all(session, records).await?;
        // Waiters are told once the caller committed ([`Store::advance`], the saga's
        // `committed`): a hint before the commit only makes them read the old order again.
        Ok(order)
    }

    /// Moves several orders inside `session`, each step in turn, with the effect of
    /// [`Store::advance_in`] for each: one read of the orders, one `update` command of their new
    /// documents (each guarded as `advance_in` guards it) and one insert of their events, however
    /// many steps. Answers for each step what `advance_in` would have: the order after it, or why
    /// it did not move (a step its state machine does not have, no such order, a payment hold);
    /// the caller decides what each means. Another writer in between fails the whole of it with
    /// [`StoreError::Raced`].
    pub async fn advance_all_in(
        &self,
        session: &mut ClientSession,
        steps: Vec<(OrderId, Step)>,
    ) -> Result<Vec<Result<OrderDoc, StoreError>>, StoreError> {
        let ids: Vec<String> = steps.iter().map(|(id, _)| id.to_string()).collect();
        let read: Vec<OrderDoc> = self
            .orders
            .find(doc! { "_id": { "$in": &ids } })
            .session(&mut *session)
            .await?
            .stream(&mut *session)
            .try_collect()
            .await?;
        // Each order's version as read, and the guard its write must match.
        let as_read: HashMap<OrderId, (i64, Document)> =
            read.iter().map(|o| (o.id, (o.version, guard(o)))).collect();
        let mut now_at: HashMap<OrderId, OrderDoc> = read.into_iter().map(|o| (o.id, o)).collect();
        let mut records = Vec::new();
        let mut answers = Vec::with_capacity(steps.len());
        let now = now();
        for (id, step) in steps {
            let Some(current) = now_at.get_mut(&id) else {
                answers.push(Err(StoreError::NotFound));
                continue;
            };
            match moved(current, step, now) {
                Err(e) => answers.push(Err(e)),
                Ok(None) => answers.push(Ok(current.clone())),
                Ok(Some((order, changes))) => {
                    records.extend(self.encode_all(&order, current.version, &changes)?);
                    *current = order;
                    answers.push(Ok(current.clone()));
                }
            }
        }
        let mut writes = Vec::new();
        for (id, (version, guard)) in as_read {
            let order = &now_at[&id];
            if order.version != version {
                let replacement = bson::to_document(order)
                    .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
                writes.push((guard, replacement));
            }
        }
        let expected = writes.len() as u64;
        if mongo::update_each(&self.orders, writes, session).await? < expected {
            return Err(StoreError::Raced);
        }
        self.outbox.append_all(session, records).await?;
        Ok(answers)
    }

    /// The events of `changes`, the versions after `from` in turn.
    fn encode_all(
        &self,
        order: &OrderDoc,
        from: i64,
        changes: &[Change],
    ) -> Result<Vec<Encoded>, StoreError> {
        let mut records = Vec::with_capacity(changes.len());
        for (i, change) in changes.iter().enumerate() {
            let version = (from + 1 + i as i64) as u64;
            records.extend(self.encode(order, *change, version)?);
        }
        Ok(records)
    }

    /// What one version of `order` publishes (nothing for a refund it does not have).
    fn encode(
        &self,
        order: &OrderDoc,
        change: Change,
        version: u64,
    ) -> Result<Option<Encoded>, StoreError> {
        let key = order.id;
        let (order_id, user_id, total) = (order.id, order.user_id, order.total.clone());
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
                Ok(Some(
                    self.outbox
                        .encode(Envelope::new(SOURCE, key, version, data))?,
                ))
            }
            Change::Completed => {
                let data = OrderCompleted {
                    order_id,
                    user_id,
                    charges: order.charges(),
                    total,
                    completed_at: at,
                };
                Ok(Some(
                    self.outbox
                        .encode(Envelope::new(SOURCE, key, version, data))?,
                ))
            }
            Change::Cancelled => {
                let data = OrderCancelled {
                    order_id,
                    user_id,
                    reason: order.reason.clone().unwrap_or_default(),
                    cancelled_at: at,
                };
                Ok(Some(
                    self.outbox
                        .encode(Envelope::new(SOURCE, key, version, data))?,
                ))
            }
            Change::RefundDue | Change::Refunded => {
                let Some(refund) = &order.refund else {
                    return Ok(None);
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
                    Ok(Some(
                        self.outbox
                            .encode(Envelope::new(SOURCE, key, version, data))?,
                    ))
                } else {
                    let data = OrderRefunded {
                        order_id,
                        user_id,
                        amount: refund.amount.clone(),
                        refunded_at: at,
                    };
                    Ok(Some(
                        self.outbox
                            .encode(Envelope::new(SOURCE, key, version, data))?,
                    ))
                }
            }
        }
    }
}

/// The guard of a write that replaces `current`: it is still that version, held or not as it was.
fn guard(current: &OrderDoc) -> Document {
    doc! {
        "_id": current.id.to_string(),
        "version": current.version,
        "paying_until": current.paying_until,
    }
}

/// `current` after `step` at `now`, and what each new version publishes; `None` when the step
/// changes nothing (a replayed payment or refund).
fn moved(
    current: &OrderDoc,
    step: Step,
    now: bson::DateTime,
) -> Result<Option<(OrderDoc, Vec<Change>)>, StoreError> {
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
                return Ok(None);
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
            Some(_) => return Ok(None),
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
    Ok(Some((order, events)))
}
