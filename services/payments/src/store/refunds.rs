//! Refunds orders asked for: stored due, taken by one replica at a time, retried with a backoff
//! until Stripe confirms them (`crate::refunds` runs the attempts).

use std::time::Duration;
use storefront_events::OrderId;

use futures::TryStreamExt;
use mongodb::{
    ClientSession,
    bson::{self, doc},
    options::ReturnDocument,
};
use storefront_events::payments::PaymentRefunded;
use storefront_kit::retry_transient;

use super::{
    PaymentDoc, PaymentStatus, RefundDoc, RefundRequest, Store, StoreError, later, movable, now,
    stored,
};
use crate::domain::Transition;

/// How long one refund attempt may take before another replica may try it.
const REFUND_LEASE: Duration = Duration::from_secs(60);
/// The longest pause between two refund attempts.
const REFUND_BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The pause before refund attempt `attempts + 1`: 1 s doubling, at most five minutes.
pub fn refund_backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(REFUND_BACKOFF_CAP)
}

impl Store {
    /// Stores orders' request for a refund (inside the consumer's transaction), due at once.
    /// A request seen before changes nothing. Returns whether it was new.
    pub async fn refund_due_in(
        &self,
        session: &mut ClientSession,
        request: &RefundRequest,
    ) -> Result<bool, StoreError> {
        let id = request.order_id.to_string();
        let refund = RefundDoc {
            reason: request.reason.clone(),
            due_at: now(),
            attempts: 0,
            next_attempt_at: now(),
            last_error: None,
            refund_id: None,
            refunded_at: None,
        };
        let refund = bson::to_bson(&refund)?;
        let current = self
            .payments
            .find_one(doc! { "_id": &id })
            .session(&mut *session)
            .await?;
        match current {
            Some(p) if p.refund.is_some() || !Transition::OweRefund.allows(p.status) => Ok(false),
            Some(_) => {
                self.payments
                    .update_one(
                        doc! { "_id": &id },
                        doc! { "$set": {
                            "status": stored(Transition::OweRefund.to())?,
                            "refund": refund,
                            "payment_intent_id": &request.payment_intent_id,
                            "updated_at": now(),
                        } },
                    )
                    .session(&mut *session)
                    .await?;
                Ok(true)
            }
            // A payment this database never recorded (restored from a backup, say): the
            // request carries all a refund needs.
            None => {
                let mut doc = PaymentDoc {
                    id: request.order_id,
                    user_id: request.user_id,
                    amount: request.amount.clone(),
                    charges: Vec::new(),
                    status: Transition::OweRefund.to(),
                    payment_intent_id: Some(request.payment_intent_id.clone()),
                    reason: None,
                    attempts: 0,
                    version: 0,
                    claimed_at: now(),
                    updated_at: now(),
                    refund: None,
                };
                doc.refund = bson::from_bson(refund).ok();
                self.payments
                    .insert_one(&doc)
                    .session(&mut *session)
                    .await?;
                Ok(true)
            }
        }
    }

    /// Refunds whose next attempt is due, oldest first.
    pub async fn due_refunds(&self, limit: i64) -> Result<Vec<PaymentDoc>, StoreError> {
        Ok(self
            .payments
            .find(doc! {
                "status": stored(PaymentStatus::RefundDue)?,
                "refund.next_attempt_at": { "$lte": now() },
            })
            .sort(doc! { "refund.next_attempt_at": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Takes one due refund for an attempt: no other replica tries it for `REFUND_LEASE`.
    /// `None` when someone else took it or it is done.
    pub async fn take_refund(&self, order: OrderId) -> Result<Option<PaymentDoc>, StoreError> {
        Ok(self
            .payments
            .find_one_and_update(
                doc! {
                    "_id": order.to_string(),
                    "status": stored(PaymentStatus::RefundDue)?,
                    "refund.next_attempt_at": { "$lte": now() },
                },
                doc! {
                    "$set": { "refund.next_attempt_at": later(REFUND_LEASE) },
                    "$inc": { "refund.attempts": 1 },
                },
            )
            .return_document(ReturnDocument::After)
            .await?)
    }

    /// An attempt did not get Stripe's confirmation: try again after [`refund_backoff`].
    pub async fn refund_not_yet(
        &self,
        order: OrderId,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        self.payments
            .update_one(
                doc! { "_id": order.to_string(), "status": stored(PaymentStatus::RefundDue)? },
                doc! { "$set": {
                    "refund.next_attempt_at": later(refund_backoff(attempts)),
                    "refund.last_error": error,
                    "updated_at": now(),
                } },
            )
            .await?;
        Ok(())
    }

    /// Stripe confirmed the refund: recorded once, with `payment.refunded`.
    pub async fn refunded(&self, order: OrderId, refund_id: &str) -> Result<bool, StoreError> {
        retry_transient!(self.refunded_once(order, refund_id).await)
    }

    async fn refunded_once(&self, order: OrderId, refund_id: &str) -> Result<bool, StoreError> {
        self.transition_once(
            doc! { "_id": order.to_string(), "status": movable(Transition::Refund)? },
            doc! {
                "status": stored(Transition::Refund.to())?,
                "refund.refund_id": refund_id,
                "refund.refunded_at": now(),
                "refund.last_error": null,
                "updated_at": now(),
            },
            |payment| PaymentRefunded {
                order_id: payment.id,
                user_id: payment.user_id,
                payment_intent_id: payment.payment_intent_id.clone().unwrap_or_default(),
                amount: payment.amount.clone(),
                refund_id: Some(refund_id.to_owned()),
                refunded_at: payment.updated_at.to_chrono(),
            },
        )
        .await
    }
}
