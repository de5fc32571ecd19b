//! The payments database: `orders` (payments' replica of the orders it may charge, from `order.*`
//! events in version order), `payments` (one record per order, whatever the number of attempts)
//! and the outbox.
//!
//! A record is *claimed* before Stripe is called: one atomic update moves it to `processing`, so
//! two requests to pay one order never both reach Stripe. Its outcome is recorded once: the first
//! of the confirmation and the webhook writes it, the other finds it written.

use mongodb::{
    ClientSession, Collection,
    bson::{self, doc},
    options::ReturnDocument,
};
use serde::{Deserialize, Serialize};
use storefront_events::{
    Envelope, Event, Money,
    payments::{PaymentFailed, PaymentRefunded, PaymentSucceeded},
};
use storefront_kit::{
    kafka::HandlerError,
    mongo::{Mongo, Transient, is_duplicate_key},
    outbox::Outbox,
    replica::{Versioned, apply_next},
    retry_transient,
};
use uuid::Uuid;

pub const SOURCE: &str = "payments";
/// A claim older than this is taken to belong to a request that died.
const CLAIM_TTL_MS: i64 = 60_000;

/// What payments knows of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderReplica {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub total: Money,
    /// `pending`, `awaiting_payment`, `completed` or `cancelled`.
    pub state: String,
    pub version: i64,
}

impl Versioned for OrderReplica {
    fn version(&self) -> i64 {
        self.version
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// A request holds the claim and is talking to Stripe.
    Processing,
    /// Waiting for the customer (3-D Secure) or for Stripe's webhook.
    RequiresAction,
    Failed,
    Succeeded,
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentDoc {
    /// The order id.
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub amount: Money,
    pub status: PaymentStatus,
    #[serde(default)]
    pub payment_intent_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    pub attempts: u32,
    pub version: i64,
    pub claimed_at: bson::DateTime,
    pub updated_at: bson::DateTime,
}

impl PaymentDoc {
    pub fn order(&self) -> Uuid {
        self.id.parse().unwrap_or_default()
    }

    fn user(&self) -> Uuid {
        self.user_id.parse().unwrap_or_default()
    }
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
    Outbox(String),
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
            other => Error::internal(other),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    mongo: Mongo,
    orders: Collection<OrderReplica>,
    payments: Collection<PaymentDoc>,
    outbox: Outbox,
}

fn now() -> bson::DateTime {
    bson::DateTime::now()
}

impl Store {
    pub fn new(mongo: Mongo, outbox: Outbox) -> Self {
        Store {
            orders: mongo.db.collection("orders"),
            payments: mongo.db.collection("payments"),
            mongo,
            outbox,
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.outbox.ensure_indexes().await
    }

    pub async fn order(&self, id: Uuid) -> Result<Option<OrderReplica>, StoreError> {
        Ok(self.orders.find_one(doc! { "_id": id.to_string() }).await?)
    }

    pub async fn payment(&self, order: Uuid) -> Result<Option<PaymentDoc>, StoreError> {
        Ok(self
            .payments
            .find_one(doc! { "_id": order.to_string() })
            .await?)
    }

    /// Takes the order's payment record for one attempt, or says why not.
    pub async fn claim(&self, order: &OrderReplica) -> Result<PaymentDoc, StoreError> {
        let fresh = PaymentDoc {
            id: order.id.clone(),
            user_id: order.user_id.clone(),
            amount: order.total.clone(),
            status: PaymentStatus::Processing,
            payment_intent_id: None,
            reason: None,
            attempts: 1,
            version: 0,
            claimed_at: now(),
            updated_at: now(),
        };
        match self.payments.insert_one(&fresh).await {
            Ok(_) => return Ok(fresh),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let stale = bson::DateTime::from_millis(now().timestamp_millis() - CLAIM_TTL_MS);
        let claimed = self
            .payments
            .find_one_and_update(
                doc! { "_id": &order.id, "$or": [
                    { "status": { "$in": ["failed", "requires_action"] } },
                    { "status": "processing", "claimed_at": { "$lt": stale } },
                ] },
                doc! {
                    "$set": { "status": "processing", "claimed_at": now(), "updated_at": now() },
                    "$inc": { "attempts": 1 },
                },
            )
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(claimed) = claimed {
            return Ok(claimed);
        }
        match self.payment(order.id.parse().unwrap_or_default()).await? {
            Some(p) if matches!(p.status, PaymentStatus::Succeeded | PaymentStatus::Refunded) => {
                Err(StoreError::AlreadyPaid)
            }
            _ => Err(StoreError::InProgress),
        }
    }

    /// Notes the order's PaymentIntent on its record.
    pub async fn set_intent(&self, order: Uuid, intent_id: &str) -> Result<(), StoreError> {
        self.payments
            .update_one(
                doc! { "_id": order.to_string() },
                doc! { "$set": { "payment_intent_id": intent_id } },
            )
            .await?;
        Ok(())
    }

    /// Leaves the claim for the customer's action or the webhook.
    pub async fn release(&self, order: Uuid, status: PaymentStatus) -> Result<(), StoreError> {
        let status = bson::to_bson(&status).map_err(|e| StoreError::Outbox(e.to_string()))?;
        self.payments
            .update_one(
                doc! { "_id": order.to_string(), "status": "processing" },
                doc! { "$set": { "status": status, "updated_at": now() } },
            )
            .await?;
        Ok(())
    }

    /// Records a success once and publishes `payment.succeeded`. Returns whether this call
    /// recorded it (false: it was recorded before).
    pub async fn succeeded(&self, order: Uuid, intent_id: &str) -> Result<bool, StoreError> {
        retry_transient!(self.succeeded_once(order, intent_id).await)
    }

    async fn succeeded_once(&self, order: Uuid, intent_id: &str) -> Result<bool, StoreError> {
        let mut session = self.mongo.begin().await?;
        let Some(payment) = self
            .payments
            .find_one_and_update(
                doc! { "_id": order.to_string(), "status": { "$nin": ["succeeded", "refunded"] } },
                doc! {
                    "$set": { "status": "succeeded", "payment_intent_id": intent_id, "updated_at": now() },
                    "$inc": { "version": 1 },
                },
            )
            .return_document(ReturnDocument::After)
            .session(&mut session)
            .await?
        else {
            let _ = session.abort_transaction().await;
            return Ok(false);
        };
        let event = PaymentSucceeded {
            order_id: payment.order(),
            user_id: payment.user(),
            payment_intent_id: intent_id.to_owned(),
            amount: payment.amount.clone(),
            succeeded_at: payment.updated_at.to_chrono(),
        };
        self.emit(&mut session, &payment, event).await?;
        self.outbox.commit(session).await?;
        Ok(true)
    }

    /// Records a failed attempt and publishes `payment.failed`; the order stays payable. Nothing
    /// happens when the payment already succeeded (a late webhook of an earlier attempt).
    pub async fn failed(
        &self,
        order: Uuid,
        intent_id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        retry_transient!(self.failed_once(order, intent_id, reason).await)
    }

    async fn failed_once(
        &self,
        order: Uuid,
        intent_id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut session = self.mongo.begin().await?;
        let Some(payment) = self
            .payments
            .find_one_and_update(
                doc! { "_id": order.to_string(), "status": { "$in": ["processing", "requires_action"] } },
                doc! {
                    "$set": { "status": "failed", "reason": reason, "payment_intent_id": intent_id, "updated_at": now() },
                    "$inc": { "version": 1 },
                },
            )
            .return_document(ReturnDocument::After)
            .session(&mut session)
            .await?
        else {
            let _ = session.abort_transaction().await;
            return Ok(false);
        };
        let event = PaymentFailed {
            order_id: payment.order(),
            user_id: payment.user(),
            payment_intent_id: intent_id.to_owned(),
            reason: reason.to_owned(),
            attempt: payment.attempts,
            failed_at: payment.updated_at.to_chrono(),
        };
        self.emit(&mut session, &payment, event).await?;
        self.outbox.commit(session).await?;
        Ok(true)
    }

    /// Marks a succeeded payment refunded (inside the consumer's transaction) and publishes
    /// `payment.refunded`. `None` when there is nothing to refund.
    pub async fn refunded_in(
        &self,
        session: &mut ClientSession,
        order: Uuid,
    ) -> Result<Option<PaymentDoc>, StoreError> {
        let Some(payment) = self
            .payments
            .find_one_and_update(
                doc! { "_id": order.to_string(), "status": "succeeded" },
                doc! { "$set": { "status": "refunded", "updated_at": now() }, "$inc": { "version": 1 } },
            )
            .return_document(ReturnDocument::After)
            .session(&mut *session)
            .await?
        else {
            return Ok(None);
        };
        let event = PaymentRefunded {
            order_id: payment.order(),
            user_id: payment.user(),
            payment_intent_id: payment.payment_intent_id.clone().unwrap_or_default(),
            amount: payment.amount.clone(),
            refunded_at: payment.updated_at.to_chrono(),
        };
        self.emit(session, &payment, event).await?;
        Ok(Some(payment))
    }

    /// A payment that succeeded, for the refund check.
    pub async fn succeeded_payment(
        &self,
        session: &mut ClientSession,
        order: Uuid,
    ) -> Result<Option<PaymentDoc>, StoreError> {
        Ok(self
            .payments
            .find_one(doc! { "_id": order.to_string(), "status": "succeeded" })
            .session(session)
            .await?)
    }

    /// Applies an order event to the replica when its version is the next one (see the kit's
    /// `replica`). `edit` makes the next replica from the current one.
    pub async fn apply_order(
        &self,
        session: &mut ClientSession,
        id: &str,
        version: i64,
        edit: impl FnOnce(Option<OrderReplica>) -> Option<OrderReplica>,
    ) -> Result<bool, HandlerError> {
        apply_next(&self.orders, session, id, version, edit).await
    }

    async fn emit<E: Event>(
        &self,
        session: &mut ClientSession,
        payment: &PaymentDoc,
        data: E,
    ) -> Result<(), StoreError> {
        let event = Envelope::new(SOURCE, &payment.id, payment.version as u64, data);
        self.outbox
            .append(session, event)
            .await
            .map_err(|e| StoreError::Outbox(e.to_string()))
    }
}
