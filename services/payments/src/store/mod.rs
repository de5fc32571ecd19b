//! The payments database: `payments` (one record per order, whatever the number of attempts,
//! with its refund when orders asks for one) and the outbox.
//!
//! A record is *claimed* before Stripe is called: one atomic update moves it to `processing`, so
//! two requests to pay one order never both reach Stripe. Its outcome is recorded once: the first
//! of the confirmation and the webhook writes it, the other finds it written.
//!
//! payments keeps no copy of the orders: whether an order may be charged, and for how much, comes
//! from orders' hold (`crate::orders`), and whether money may be kept is decided by orders too —
//! a refund starts here only when orders says one is due (`order.refund_due`). A due refund is
//! stored with its attempts and next attempt time, so the refund task retries it across restarts
//! until Stripe confirms it.

use std::time::Duration;
use storefront_events::{OrderId, UserId};

use futures::TryStreamExt;
use mongodb::{
    ClientSession, Collection, IndexModel,
    bson::{self, Document, doc},
    options::ReturnDocument,
};
use serde::{Deserialize, Serialize};
use storefront_events::{
    Envelope, Event, Money,
    orders::PriceLine,
    payments::{PaymentFailed, PaymentSucceeded},
};
use storefront_kit::{
    mongo::{Mongo, Transient, is_duplicate_key},
    outbox::{AppendError, Outbox},
    retry_transient,
};

use crate::orders::HeldOrder;

mod refunds;

pub use refunds::refund_backoff;

pub const SOURCE: &str = "payments";
/// A claim older than this is taken to belong to a request that died.
const CLAIM_TTL_MS: i64 = 60_000;

pub use crate::domain::PaymentStatus;
use crate::domain::Transition;

/// A status as stored.
fn stored(status: PaymentStatus) -> Result<bson::Bson, StoreError> {
    Ok(bson::to_bson(&status)?)
}

/// The filter on `status` of a payment `transition` may move: one of the statuses it starts from.
fn movable(transition: Transition) -> Result<Document, StoreError> {
    let from = transition
        .from()
        .iter()
        .map(|&s| stored(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(doc! { "$in": from })
}

/// A refund orders asked for, until Stripe confirms it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundDoc {
    /// orders' reason, for the customer.
    pub reason: String,
    pub due_at: bson::DateTime,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the refund task tries it (again).
    pub next_attempt_at: bson::DateTime,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Stripe's refund, once there is one.
    #[serde(default)]
    pub refund_id: Option<String>,
    #[serde(default)]
    pub refunded_at: Option<bson::DateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentDoc {
    /// The order id.
    #[serde(rename = "_id")]
    pub id: OrderId,
    pub user_id: UserId,
    pub amount: Money,
    /// What the amount is made of beyond the items, as orders priced it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charges: Vec<PriceLine>,
    pub status: PaymentStatus,
    #[serde(default)]
    pub payment_intent_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    pub attempts: u32,
    pub version: i64,
    pub claimed_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundDoc>,
}

/// What orders' `order.refund_due` says.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub payment_intent_id: String,
    pub amount: Money,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("this order is paid already")]
    AlreadyPaid,
    #[error("a payment of this order is in progress")]
    InProgress,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    #[error("outbox: {0}")]
    Outbox(#[source] AppendError),
    #[error("a document that cannot be stored: {0}")]
    Encode(#[from] bson::ser::Error),
}

impl From<AppendError> for StoreError {
    fn from(e: AppendError) -> Self {
        e.into_store(StoreError::Outbox)
    }
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        matches!(self, StoreError::Mongo(e) if e.is_transient())
    }
}

impl From<StoreError> for storefront_kit::Error {
    fn from(e: StoreError) -> Self {
        use storefront_kit::Error;
        match e {
            StoreError::AlreadyPaid => Error::Conflict {
                kind: "already-paid",
                detail: e.to_string(),
            },
            StoreError::InProgress => Error::Conflict {
                kind: "payment-in-progress",
                detail: format!("{e}; wait for its outcome"),
            },
            // A database that does not answer is a 503 (kit's mapping), not a bug.
            StoreError::Mongo(e) => e.into(),
            other => Error::internal(other),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    mongo: Mongo,
    payments: Collection<PaymentDoc>,
    outbox: Outbox,
}

fn now() -> bson::DateTime {
    bson::DateTime::now()
}

fn later(by: Duration) -> bson::DateTime {
    bson::DateTime::from_millis(now().timestamp_millis() + by.as_millis() as i64)
}

impl Store {
    pub fn new(mongo: Mongo, outbox: Outbox) -> Self {
        Store {
            payments: mongo.db.collection("payments"),
            mongo,
            outbox,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.payments
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "status": 1, "refund.next_attempt_at": 1 })
                    .build(),
            )
            .await?;
        self.outbox.ensure_indexes().await
    }

    pub async fn payment(&self, order: OrderId) -> Result<Option<PaymentDoc>, StoreError> {
        Ok(self
            .payments
            .find_one(doc! { "_id": order.to_string() })
            .await?)
    }

    /// Takes the order's payment record for one attempt, or says why not. The amount is the
    /// total orders holds the order for.
    pub async fn claim(&self, order: &HeldOrder) -> Result<PaymentDoc, StoreError> {
        let id = order.id.to_string();
        let fresh = PaymentDoc {
            id: order.id,
            user_id: order.user_id,
            amount: order.total.clone(),
            charges: order.charges.clone(),
            status: PaymentStatus::Processing,
            payment_intent_id: None,
            reason: None,
            attempts: 1,
            version: 0,
            claimed_at: now(),
            updated_at: now(),
            refund: None,
        };
        match self.payments.insert_one(&fresh).await {
            Ok(_) => return Ok(fresh),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
        // A payment another attempt may take, or one whose attempt died (claimed long ago): two
        // filters tried in turn, not one `$or`, since SecantusDB plans a filter with a top-level
        // `$or` as a scan of the whole collection (docs/architecture.md §9). Each is one
        // atomic update on `_id`, and the claim it makes (a fresh `claimed_at`) keeps the other
        // from matching for another claimer.
        let stale = bson::DateTime::from_millis(now().timestamp_millis() - CLAIM_TTL_MS);
        for filter in [
            doc! { "_id": &id, "status": movable(Transition::Claim)? },
            doc! { "_id": &id, "status": movable(Transition::Reclaim)?, "claimed_at": { "$lt": stale } },
        ] {
            let claimed = self
                .payments
                .find_one_and_update(
                    filter,
                    doc! {
                        "$set": {
                            "status": stored(Transition::Claim.to())?,
                            "claimed_at": now(),
                            "updated_at": now(),
                        },
                        "$inc": { "attempts": 1 },
                    },
                )
                .return_document(ReturnDocument::After)
                .await?;
            if let Some(claimed) = claimed {
                return Ok(claimed);
            }
        }
        match self.payment(order.id).await? {
            Some(p) if p.status.is_paid() => Err(StoreError::AlreadyPaid),
            _ => Err(StoreError::InProgress),
        }
    }

    /// Attempts nobody finished: claimed (`processing`) or waiting for the customer or the
    /// webhook (`requires_action`), untouched for longer than a claim lasts — the request died with
    /// its process, or Stripe's answer and its webhook were both lost. Oldest first.
    pub async fn abandoned(&self, limit: i64) -> Result<Vec<PaymentDoc>, StoreError> {
        let stale = bson::DateTime::from_millis(now().timestamp_millis() - CLAIM_TTL_MS);
        Ok(self
            .payments
            .find(doc! {
                "status": movable(Transition::TakeAbandoned)?,
                "updated_at": { "$lt": stale },
            })
            .sort(doc! { "updated_at": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Takes an abandoned attempt to ask Stripe how it ended: no other replica (nor this one) asks
    /// again for a claim's length, and a customer paying meanwhile finds it claimed. `None` when
    /// it moved since it was found.
    pub async fn take_abandoned(
        &self,
        found: &PaymentDoc,
    ) -> Result<Option<PaymentDoc>, StoreError> {
        let take = Transition::TakeAbandoned;
        if !take.allows(found.status) {
            return Ok(None);
        }
        Ok(self
            .payments
            .find_one_and_update(
                doc! { "_id": found.id.to_string(), "status": stored(found.status)?, "updated_at": found.updated_at },
                doc! { "$set": { "status": stored(take.to())?, "claimed_at": now(), "updated_at": now() } },
            )
            .return_document(ReturnDocument::After)
            .await?)
    }

    /// Notes the order's PaymentIntent on its record.
    pub async fn set_intent(&self, order: OrderId, intent_id: &str) -> Result<(), StoreError> {
        self.payments
            .update_one(
                doc! { "_id": order.to_string() },
                doc! { "$set": { "payment_intent_id": intent_id } },
            )
            .await?;
        Ok(())
    }

    /// Lets go of a claim: [`Transition::AwaitAction`] (the customer's action or the webhook
    /// will tell) or [`Transition::GiveUp`] (the attempt never reached Stripe).
    pub async fn release(&self, order: OrderId, release: Transition) -> Result<(), StoreError> {
        self.payments
            .update_one(
                doc! { "_id": order.to_string(), "status": movable(release)? },
                doc! { "$set": { "status": stored(release.to())?, "updated_at": now() } },
            )
            .await?;
        Ok(())
    }

    /// Records a success once and publishes `payment.succeeded` (orders decides whether the
    /// money is kept). Returns whether this call recorded it (false: it was recorded before).
    pub async fn succeeded(&self, order: OrderId, intent_id: &str) -> Result<bool, StoreError> {
        retry_transient!(self.succeeded_once(order, intent_id).await)
    }

    async fn succeeded_once(&self, order: OrderId, intent_id: &str) -> Result<bool, StoreError> {
        self.transition_once(
            doc! { "_id": order.to_string(), "status": movable(Transition::Succeed)? },
            doc! { "status": stored(Transition::Succeed.to())?, "payment_intent_id": intent_id, "updated_at": now() },
            |payment| PaymentSucceeded {
                order_id: payment.id,
                user_id: payment.user_id,
                payment_intent_id: intent_id.to_owned(),
                amount: payment.amount.clone(),
                succeeded_at: payment.updated_at.to_chrono(),
            },
        )
        .await
    }

    /// Records a failed attempt and publishes `payment.failed`; the order stays payable. Nothing
    /// happens when the payment already succeeded (a late webhook of an earlier attempt).
    pub async fn failed(
        &self,
        order: OrderId,
        intent_id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        retry_transient!(self.failed_once(order, intent_id, reason).await)
    }

    async fn failed_once(
        &self,
        order: OrderId,
        intent_id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.transition_once(
            doc! { "_id": order.to_string(), "status": movable(Transition::Fail)? },
            doc! { "status": stored(Transition::Fail.to())?, "reason": reason, "payment_intent_id": intent_id, "updated_at": now() },
            |payment| PaymentFailed {
                order_id: payment.id,
                user_id: payment.user_id,
                payment_intent_id: intent_id.to_owned(),
                reason: reason.to_owned(),
                attempt: payment.attempts,
                failed_at: payment.updated_at.to_chrono(),
            },
        )
        .await
    }

    /// One recorded transition: in one transaction, the payment `filter` finds gets `set` and a
    /// new version, and the event `event` makes of it is published. False when `filter` finds
    /// none (the transition was recorded before, or is not one from where the payment is).
    pub(super) async fn transition_once<E: Event>(
        &self,
        filter: Document,
        set: Document,
        event: impl FnOnce(&PaymentDoc) -> E,
    ) -> Result<bool, StoreError> {
        let mut session = self.mongo.begin().await?;
        let Some(payment) = self
            .payments
            .find_one_and_update(filter, doc! { "$set": set, "$inc": { "version": 1 } })
            .return_document(ReturnDocument::After)
            .session(&mut session)
            .await?
        else {
            let _ = session.abort_transaction().await;
            return Ok(false);
        };
        let data = event(&payment);
        self.emit(&mut session, &payment, data).await?;
        self.outbox.commit(session).await?;
        Ok(true)
    }

    async fn emit<E: Event>(
        &self,
        session: &mut ClientSession,
        payment: &PaymentDoc,
        data: E,
    ) -> Result<(), StoreError> {
        let event = Envelope::new(SOURCE, payment.id, payment.version as u64, data);
        Ok(self.outbox.append(session, event).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fault test found a payment answering 500 while MongoDB restarted ("I/O error:
    /// unexpected end of file"): the store's errors keep kit's mapping of an unanswering
    /// database to a 503.
    #[test]
    fn a_database_that_does_not_answer_is_a_503_not_a_500() {
        let eof = mongodb::error::Error::from(mongodb::error::ErrorKind::from(
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "unexpected end of file"),
        ));
        let error = storefront_kit::Error::from(StoreError::Mongo(eof));
        assert!(
            matches!(error, storefront_kit::Error::Unavailable(_)),
            "{error:?}"
        );
    }

    #[test]
    fn refunds_back_off_to_five_minutes() {
        assert_eq!(refund_backoff(0), Duration::from_secs(1));
        assert_eq!(refund_backoff(3), Duration::from_secs(8));
        assert_eq!(refund_backoff(9), Duration::from_secs(300));
        assert_eq!(refund_backoff(u32::MAX), Duration::from_secs(300));
    }
}
