//! The orders database: `orders`, `products` (orders' own replica of the catalog, built from
//! `product.*` and `stock.changed` events in version order), `idempotency_keys` (one per
//! `Idempotency-Key` a customer used) and the outbox.
//!
//! Every order change is a version-guarded write in a transaction with its event, so two replicas
//! (the expiry task on each, a cancel racing an inventory answer) never both move one order.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    ClientSession, Collection, IndexModel,
    bson::{self, Document, doc},
    options::FindOptions,
};
use serde::{Deserialize, Serialize};
use storefront_events::{
    Envelope, Event, Money,
    orders::{OrderAwaitingPayment, OrderCancelled, OrderCompleted, OrderCreated, OrderLine},
};
use storefront_kit::{
    mongo::{Mongo, Transient, is_duplicate_key},
    outbox::Outbox,
    replica::{ProductReplica, Products},
    retry_transient,
};
use uuid::Uuid;

use crate::domain::{OrderState, Transition};

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
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    /// When an open order is cancelled unpaid. Stored, so expiry survives restarts.
    pub expires_at: bson::DateTime,
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
                total: self.total.clone(),
                created_at: self.created_at.to_chrono(),
            },
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] Transition),
    #[error("this Idempotency-Key was used for a different order")]
    KeyReused,
    /// The order changed between read and write; run again.
    #[error("the order changed while it was being written")]
    Raced,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    #[error("outbox: {0}")]
    Outbox(String),
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
            other => Error::internal(other),
        }
    }
}

/// What moved an order, and so what it publishes.
#[derive(Debug, Clone)]
pub enum Step {
    Reserved,
    Completed,
    Cancelled { reason: String },
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
    outbox: Outbox,
}

fn now() -> bson::DateTime {
    bson::DateTime::now()
}

pub fn at(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

impl Store {
    pub fn new(mongo: Mongo, outbox: Outbox) -> Self {
        Store {
            orders: mongo.db.collection("orders"),
            products: Products::new(&mongo.db),
            keys: mongo.db.collection("idempotency_keys"),
            mongo,
            outbox,
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
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
            .map_err(|e| StoreError::Outbox(e.to_string()))
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
                Ok::<_, StoreError>(order)
            }
            .await
        )
    }

    /// Moves an order one step inside `session` and publishes the step's event.
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
        let mut order = current.clone();
        order.state = match &step {
            Step::Reserved => current.state.reserve()?,
            Step::Completed => current.state.complete()?,
            Step::Cancelled { reason } => {
                order.reason = Some(reason.clone());
                current.state.cancel()?
            }
        };
        order.version = current.version + 1;
        order.updated_at = now();
        let written = self
            .orders
            .replace_one(
                doc! { "_id": &current.id, "version": current.version },
                &order,
            )
            .session(&mut *session)
            .await?;
        if written.matched_count == 0 {
            return Err(StoreError::Raced);
        }
        let (key, version) = (order.id.clone(), order.version as u64);
        let (order_id, user_id, total) = (order.uuid(), order.user(), order.total.clone());
        match step {
            Step::Reserved => {
                let data = OrderAwaitingPayment {
                    order_id,
                    user_id,
                    total,
                    expires_at: order.expires_at.to_chrono(),
                };
                self.emit(session, Envelope::new(SOURCE, key, version, data))
                    .await?
            }
            Step::Completed => {
                let data = OrderCompleted {
                    order_id,
                    user_id,
                    total,
                    completed_at: order.updated_at.to_chrono(),
                };
                self.emit(session, Envelope::new(SOURCE, key, version, data))
                    .await?
            }
            Step::Cancelled { reason } => {
                let data = OrderCancelled {
                    order_id,
                    user_id,
                    reason,
                    cancelled_at: order.updated_at.to_chrono(),
                };
                self.emit(session, Envelope::new(SOURCE, key, version, data))
                    .await?
            }
        }
        Ok(order)
    }

    /// Open orders whose payment window has passed, oldest due first.
    pub async fn due(&self, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        let due: Vec<OrderDoc> = self
            .orders
            .find(doc! {
                "state": { "$in": ["pending", "awaiting_payment"] },
                "expires_at": { "$lt": now() },
            })
            .sort(doc! { "expires_at": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(due.iter().map(OrderDoc::uuid).collect())
    }
}
