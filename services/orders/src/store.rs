//! The orders database: `orders`, `products` (orders' own replica of the catalog, built from
//! `product.*` and `stock.changed` events in version order), `idempotency_keys` (one per
//! `Idempotency-Key` a customer used) and the outbox.
//!
//! Every order change is a version-guarded write in a transaction with its event, so two replicas
//! (the expiry task on each, a cancel racing an inventory answer) never both move one order.
//!
//! The order document is the one place an order's fate is decided (docs/saga.md, "One owner"):
//! payments *holds* an order before it calls Stripe (`paying_until`, no version change), which a
//! cancel or the expiry respects; a payment that still arrives for an order that ended unpaid is
//! recorded on the order as a refund due, never dropped.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    ClientSession, Collection, IndexModel,
    bson::{self, Document, doc},
    options::{FindOptions, ReturnDocument},
};
use serde::{Deserialize, Serialize};
use storefront_events::{
    Envelope, Event, Money,
    orders::{
        OrderAwaitingPayment, OrderCancelled, OrderCompleted, OrderCreated, OrderLine,
        OrderRefundDue, OrderRefunded, PriceLine,
    },
};
use storefront_kit::{
    mongo::{Mongo, Transient, is_duplicate_key},
    outbox::{AppendError, Outbox},
    replica::{ProductReplica, Products},
    retry_transient,
};
use uuid::Uuid;

use crate::{
    changes::Changes,
    domain::{OrderState, Settlement, Transition},
    pricing::Priced,
};

pub const SOURCE: &str = "orders";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineDoc {
    pub product_id: String,
    pub title: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub line_total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub lines: Vec<LineDoc>,
    pub total: Money,
    pub state: OrderState,
    /// Why it was cancelled.
    #[serde(default)]
    pub reason: Option<String>,
    /// The number a customer reads ("Order 1042"): unique in the shop. Absent on orders placed
    /// before orders had numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    /// When an open order is cancelled unpaid. Stored, so expiry survives restarts.
    pub expires_at: bson::DateTime,
    /// The `Idempotency-Key` it was placed with (cart's checkout finds its held lines by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Held for payment until then: payments is with Stripe for it, so a cancel answers 409 and
    /// the expiry waits. Not part of the version (nothing another service replicates changes).
    /// Always written, `null` when free, so the version guard can match it.
    #[serde(default)]
    pub paying_until: Option<bson::DateTime>,
    /// The payment that went through, once payments reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentRecord>,
    /// Money to give back: a payment that arrived after the order ended unpaid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundRecord>,
    /// How it was priced: the pricing function's answer (or the fallback's) when it was placed.
    /// `total` is its total. Absent on orders placed before pricing (their total is the lines').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Priced>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub payment_intent_id: String,
    pub amount: Money,
    pub paid_at: bson::DateTime,
}

/// Where a refund is: `due` until Stripe confirms it, then `refunded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "OrderRefundStatus")]
pub enum RefundStatus {
    /// Asked of payments (`order.refund_due`); payments retries until Stripe confirms.
    Due,
    /// Stripe confirmed it (`payment.refunded`).
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub status: RefundStatus,
    pub amount: Money,
    pub payment_intent_id: String,
    pub reason: String,
    pub due_at: bson::DateTime,
    #[serde(default)]
    pub refunded_at: Option<bson::DateTime>,
}

impl OrderDoc {
    pub fn uuid(&self) -> Uuid {
        self.id.parse().unwrap_or_default()
    }

    pub fn user(&self) -> Uuid {
        self.user_id.parse().unwrap_or_default()
    }

    fn created_event(&self) -> Envelope<OrderCreated> {
        Envelope::new(
            SOURCE,
            &self.id,
            self.version as u64,
            OrderCreated {
                order_id: self.uuid(),
                user_id: self.user(),
                lines: self
                    .lines
                    .iter()
                    .map(|l| OrderLine {
                        product_id: l.product_id.parse().unwrap_or_default(),
                        title: l.title.clone(),
                        unit_price: l.unit_price.clone(),
                        quantity: l.quantity,
                    })
                    .collect(),
                charges: self.charges(),
                total: self.total.clone(),
                created_at: self.created_at.to_chrono(),
                idempotency_key: self.idempotency_key.clone(),
            },
        )
    }

    /// Shipping, fees, tax, discounts on top of the lines.
    pub fn charges(&self) -> Vec<PriceLine> {
        self.pricing
            .as_ref()
            .map(|p| p.charges.clone())
            .unwrap_or_default()
    }

    /// Whether payments holds it for payment right now.
    pub fn is_held(&self, now: bson::DateTime) -> bool {
        self.paying_until.is_some_and(|until| until > now)
    }
}

/// Why an order cannot be held for payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPayable {
    /// Stock is still being reserved: worth waiting for.
    Pending,
    Paid,
    Ended(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] Transition),
    #[error("this Idempotency-Key was used for a different order")]
    KeyReused,
    #[error("the order is being paid right now; try again in a minute if the payment fails")]
    PaymentInProgress,
    /// The order changed between read and write; run again.
    #[error("the order changed while it was being written")]
    Raced,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    #[error("outbox: {0}")]
    Outbox(String),
    /// The order number counter holds something that is not a number (a bug or a hand edit).
    #[error("the order number counter: {0}")]
    Counter(String),
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        match self {
            StoreError::Raced => true,
            StoreError::Mongo(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<StoreError> for storefront_kit::Error {
    fn from(e: StoreError) -> Self {
        use storefront_kit::Error;
        match e {
            StoreError::NotFound => Error::NotFound("no such order".into()),
            StoreError::Transition(t) => Error::Conflict {
                kind: "order-state",
                detail: t.to_string(),
            },
            StoreError::KeyReused => Error::Conflict {
                kind: "idempotency-key-reused",
                detail: e.to_string(),
            },
            StoreError::PaymentInProgress => Error::Conflict {
                kind: "payment-in-progress",
                detail: e.to_string(),
            },
            // A database that does not answer is a 503 (kit's mapping), not a bug.
            StoreError::Mongo(e) => e.into(),
            other => Error::internal(other),
        }
    }
}

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

pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Clone)]
pub struct Store {
    mongo: Mongo,
    orders: Collection<OrderDoc>,
    products: Products,
    keys: Collection<Document>,
    counters: Collection<Document>,
    /// Order numbers this replica took from the counter and has not handed out yet.
    numbers: std::sync::Arc<tokio::sync::Mutex<std::ops::Range<i64>>>,
    outbox: Outbox,
    changes: Changes,
}

/// How much older than its `created_at` an order's id may be: more than any placement takes
/// (the pricing function's timeout included).
const ID_BEFORE_CREATED: chrono::Duration = chrono::Duration::minutes(5);

/// Order numbers are taken from one counter this many at a time: one write per this many orders,
/// not one per order. A replica that stops leaves the rest of its block unused (numbers are
/// unique and grow, but not every number is used); two replicas hand out numbers of two blocks.
const NUMBER_BLOCK: i64 = 20;

/// The first order number is the one after this (shops start a little above 1).
const NUMBERS_AFTER: i64 = 1000;

fn now() -> bson::DateTime {
    bson::DateTime::now()
}

pub fn at(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

impl Store {
    pub fn new(mongo: Mongo, outbox: Outbox, changes: Changes) -> Self {
        Store {
            orders: mongo.db.collection("orders"),
            products: Products::new(&mongo.db),
            keys: mongo.db.collection("idempotency_keys"),
            counters: mongo.db.collection("counters"),
            numbers: std::sync::Arc::new(tokio::sync::Mutex::new(0..0)),
            mongo,
            outbox,
            changes,
        }
    }

    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        for keys in [
            doc! { "user_id": 1, "_id": -1 },
            doc! { "state": 1, "_id": -1 },
            doc! { "state": 1, "expires_at": 1 },
        ] {
            self.orders
                .create_index(IndexModel::builder().keys(keys).build())
                .await?;
        }
        self.outbox.ensure_indexes().await
    }

    async fn emit<E: Event>(
        &self,
        session: &mut ClientSession,
        event: Envelope<E>,
    ) -> Result<(), StoreError> {
        self.outbox
            .append(session, event)
            .await
            .map_err(|e| match e {
                // Whole, so that a transient failure runs the transaction again.
                AppendError::Mongo(e) => StoreError::Mongo(e),
                other => StoreError::Outbox(other.to_string()),
            })
    }

    /// A new order's number: unique in the shop (one counter document, taken in blocks of
    /// [`NUMBER_BLOCK`] with an atomic `$inc`).
    pub async fn next_number(&self) -> Result<i64, StoreError> {
        let mut numbers = self.numbers.lock().await;
        if numbers.is_empty() {
            let counter = self
                .counters
                .find_one_and_update(
                    doc! { "_id": "order_number" },
                    doc! { "$inc": { "value": NUMBER_BLOCK } },
                )
                .upsert(true)
                .return_document(mongodb::options::ReturnDocument::After)
                .await?
                .ok_or_else(|| StoreError::Counter("missing after an upsert".into()))?;
            let end = counter
                .get_i64("value")
                .or_else(|_| counter.get_i32("value").map(i64::from))
                .map_err(|e| StoreError::Counter(e.to_string()))?;
            *numbers = NUMBERS_AFTER + end - NUMBER_BLOCK + 1..NUMBERS_AFTER + end + 1;
        }
        let number = numbers.start;
        numbers.start += 1;
        Ok(number)
    }

    /// The replicas of these products (missing ones are left out).
    pub async fn products(&self, ids: &[String]) -> Result<Vec<ProductReplica>, StoreError> {
        Ok(self.products.get(ids).await?)
    }

    /// orders' product replica, which the consumer keeps.
    pub fn product_replica(&self) -> &Products {
        &self.products
    }

    /// Places `order` (pending, version 1) and publishes `order.created`. With an idempotency
    /// key, a second call with the same key returns the first order instead; with the same key
    /// and different lines it is refused. Returns the order and whether it is new.
    pub async fn place(
        &self,
        order: &OrderDoc,
        key: Option<(&str, &str)>,
    ) -> Result<(OrderDoc, bool), StoreError> {
        retry_transient!(self.place_once(order, key).await)
    }

    async fn place_once(
        &self,
        order: &OrderDoc,
        key: Option<(&str, &str)>,
    ) -> Result<(OrderDoc, bool), StoreError> {
        let mut session = self.mongo.begin().await?;
        if let Some((key, fingerprint)) = key {
            let record = doc! {
                "_id": format!("{}:{key}", order.user_id),
                "order_id": &order.id,
                "fingerprint": fingerprint,
                "created_at": now(),
            };
            match self.keys.insert_one(record).session(&mut session).await {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => {
                    let _ = session.abort_transaction().await;
                    return self.replay(&order.user_id, key, fingerprint).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.orders.insert_one(order).session(&mut session).await?;
        self.emit(&mut session, order.created_event()).await?;
        self.outbox.commit(session).await?;
        Ok((order.clone(), true))
    }

    async fn replay(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<(OrderDoc, bool), StoreError> {
        let record = self
            .keys
            .find_one(doc! { "_id": format!("{user_id}:{key}") })
            .await?
            .ok_or(StoreError::Raced)?;
        if record.get_str("fingerprint").unwrap_or_default() != fingerprint {
            return Err(StoreError::KeyReused);
        }
        let id = record.get_str("order_id").unwrap_or_default();
        let order = self
            .orders
            .find_one(doc! { "_id": id })
            .await?
            .ok_or(StoreError::Raced)?;
        Ok((order, false))
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<OrderDoc>, StoreError> {
        Ok(self.orders.find_one(doc! { "_id": id.to_string() }).await?)
    }

    /// Every order placed since `from`, oldest first, as the sales figures read it
    /// (`crate::stats`). Ids are UUIDv7: the smallest id of a moment a little before `from`
    /// bounds a range of the primary index, so no index on `created_at` is needed. A little
    /// before, because an order's id is made before it is priced (a call to the pricing
    /// function), so its `created_at` — what decides its day — may be seconds later than its id.
    pub async fn placed_since(
        &self,
        from: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::stats::Placed>, StoreError> {
        let smallest = crate::stats::first_id_at(from - ID_BEFORE_CREATED);
        Ok(self
            .orders
            .clone_with_type::<crate::stats::Placed>()
            .find(doc! {
                "_id": { "$gte": smallest.to_string() },
                "created_at": { "$gte": bson::DateTime::from_chrono(from) },
            })
            .projection(doc! { "state": 1, "total": 1, "lines": 1, "created_at": 1 })
            .sort(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Newest first; `user` limits to one customer's orders, `state` to one state.
    pub async fn list(
        &self,
        user: Option<Uuid>,
        state: Option<OrderState>,
        page: u64,
        per_page: u64,
    ) -> Result<Page<OrderDoc>, StoreError> {
        let mut filter = Document::new();
        if let Some(user) = user {
            filter.insert("user_id", user.to_string());
        }
        if let Some(state) = state {
            filter.insert("state", state.as_str());
        }
        let total = self.orders.count_documents(filter.clone()).await?;
        let items = self
            .orders
            .find(filter)
            .with_options(
                FindOptions::builder()
                    .sort(doc! { "_id": -1 })
                    .skip((page - 1) * per_page)
                    .limit(per_page as i64)
                    .build(),
            )
            .await?
            .try_collect()
            .await?;
        Ok(Page { items, total })
    }

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

    /// Holds an order for payment for `ttl`: payments calls Stripe only with this hold, and a
    /// cancel or the expiry waits until it ends. Holding again extends it (payments' own claim
    /// keeps two payers of one order apart). Only the owner's open, unexpired order can be held.
    pub async fn hold_for_payment(
        &self,
        id: Uuid,
        user: Uuid,
        ttl: std::time::Duration,
    ) -> Result<Result<OrderDoc, NotPayable>, StoreError> {
        // The order may leave `pending` between the conditional update and the read that says
        // why it did not match: then the update is tried again (it moves forward only once).
        for _ in 0..3 {
            if let Some(answer) = self.try_hold(id, user, ttl).await? {
                return Ok(answer);
            }
        }
        Ok(Err(NotPayable::Pending))
    }

    /// One try of [`Store::hold_for_payment`]; `None` when the order became payable as it was
    /// asked for (ask again).
    async fn try_hold(
        &self,
        id: Uuid,
        user: Uuid,
        ttl: std::time::Duration,
    ) -> Result<Option<Result<OrderDoc, NotPayable>>, StoreError> {
        let now = now();
        let until = bson::DateTime::from_millis(now.timestamp_millis() + ttl.as_millis() as i64);
        let held = self
            .orders
            .find_one_and_update(
                doc! {
                    "_id": id.to_string(),
                    "user_id": user.to_string(),
                    "state": OrderState::AwaitingPayment.as_str(),
                    "expires_at": { "$gt": now },
                },
                doc! { "$set": { "paying_until": until } },
            )
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(order) = held {
            return Ok(Some(Ok(order)));
        }
        let order = self
            .get(id)
            .await?
            .filter(|order| order.user_id == user.to_string())
            .ok_or(StoreError::NotFound)?;
        Ok(Some(Err(match order.state {
            OrderState::Pending => NotPayable::Pending,
            OrderState::Completed => NotPayable::Paid,
            OrderState::Cancelled => NotPayable::Ended(format!(
                "the order is cancelled: {}",
                order.reason.unwrap_or_default()
            )),
            OrderState::AwaitingPayment if order.expires_at > now => return Ok(None),
            OrderState::AwaitingPayment => {
                NotPayable::Ended("the payment window expired".to_owned())
            }
        })))
    }

    /// Ends payments' hold (its attempt failed), so the customer can cancel at once.
    pub async fn release_hold(
        &self,
        session: &mut ClientSession,
        id: Uuid,
    ) -> Result<bool, StoreError> {
        let released = self
            .orders
            .update_one(
                doc! {
                    "_id": id.to_string(),
                    "state": OrderState::AwaitingPayment.as_str(),
                    "paying_until": { "$ne": null },
                },
                doc! { "$set": { "paying_until": null } },
            )
            .session(session)
            .await?;
        Ok(released.modified_count == 1)
    }

    /// Reads order `id` until `done` accepts it or `deadline` passes, waking only when it changes
    /// (see [`Changes`]). `None` when there is no such order.
    pub async fn wait_for(
        &self,
        id: Uuid,
        deadline: tokio::time::Instant,
        done: impl Fn(&OrderDoc) -> bool,
    ) -> Result<Option<OrderDoc>, StoreError> {
        self.changes
            .wait(
                id,
                deadline,
                || self.get(id),
                |order| order.as_ref().map_or(i64::MAX, |o| o.version),
                |order| order.as_ref().is_none_or(&done),
            )
            .await
    }

    /// Open orders whose payment window has passed, oldest due first.
    pub async fn due(&self, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        let due: Vec<OrderDoc> = self
            .orders
            .find(doc! {
                "state": { "$in": ["pending", "awaiting_payment"] },
                "expires_at": { "$lt": now() },
                // Held for payment: the expiry waits for the hold to end.
                "$or": [{ "paying_until": null }, { "paying_until": { "$lt": now() } }],
            })
            .sort(doc! { "expires_at": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(due.iter().map(OrderDoc::uuid).collect())
    }
}
