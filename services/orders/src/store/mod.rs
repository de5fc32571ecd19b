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
//!
//! By concern: `documents.rs` (what is stored), `placing.rs` (a new order, its number, its
//! idempotency key), `steps.rs` (the saga's steps on an order and what each publishes),
//! `paying.rs` (payments' hold, and waiting for an order to change).

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    Collection, IndexModel,
    bson::{self, Document, doc},
};
use storefront_events::{OrderId, ProductId, UserId};
use storefront_kit::{
    mongo::{self, Mongo, Transient},
    outbox::{AppendError, Outbox},
    replica::{ProductReplica, Products},
};

use crate::{
    changes::Changes,
    domain::{OrderState, Transition},
};

mod documents;
mod paying;
mod placing;
mod steps;

pub use documents::{LineDoc, OrderDoc, PaymentRecord, RefundRecord, RefundStatus};
pub use paying::NotPayable;
pub use steps::{PAID_AFTER_CANCEL, PAID_WHILE_PENDING, Step};

pub const SOURCE: &str = "orders";

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
    Outbox(#[source] AppendError),
    /// The order number counter holds something that is not a number (a bug or a hand edit).
    #[error("the order number counter: {0}")]
    Counter(String),
}

impl From<AppendError> for StoreError {
    fn from(e: AppendError) -> Self {
        e.into_store(StoreError::Outbox)
    }
}

impl Transient for StoreError {
    /// A write that lost its race, or MongoDB's own transient error: run the transaction again.
    fn is_transient(&self) -> bool {
        matches!(self, StoreError::Raced)
            || matches!(self, StoreError::Mongo(e) if e.is_transient())
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

pub use storefront_kit::mongo::Page;

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

    /// The replicas of these products (missing ones are left out).
    pub async fn products(&self, ids: &[ProductId]) -> Result<Vec<ProductReplica>, StoreError> {
        Ok(self.products.get(ids).await?)
    }

    /// orders' product replica, which the consumer keeps.
    pub fn product_replica(&self) -> &Products {
        &self.products
    }

    pub async fn get(&self, id: OrderId) -> Result<Option<OrderDoc>, StoreError> {
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
        user: Option<UserId>,
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
        let sort = doc! { "_id": -1 };
        Ok(mongo::page(&self.orders, filter, sort, page, per_page).await?)
    }

    /// Open orders whose payment window has passed, oldest due first.
    pub async fn due(&self, limit: i64) -> Result<Vec<OrderId>, StoreError> {
        let due: Vec<OrderDoc> = self
            .orders
            .find(due_filter(now()))
            .sort(doc! { "expires_at": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(due.iter().map(|o| o.id).collect())
    }
}

/// What [`Store::due`] looks for at `now`: open, past its window, and not held for payment (no
/// hold, or one that ended). Said without a top-level `$or`, which SecantusDB plans as a scan of
/// every order, decoding each (this poll runs every second; docs/architecture.md §9).
fn due_filter(now: bson::DateTime) -> Document {
    doc! {
        "state": { "$in": ["pending", "awaiting_payment"] },
        "expires_at": { "$lt": now },
        "paying_until": { "$not": { "$gte": now } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_poll_is_planned_from_the_orders_index() {
        // Every top-level field is a path, none an operator: SecantusDB then looks the orders up
        // by the `state` + `expires_at` index instead of decoding all of them every second.
        let filter = due_filter(now());
        assert!(filter.keys().all(|k| !k.starts_with('$')), "{filter}");
        assert!(filter.contains_key("state") && filter.contains_key("expires_at"));
    }
}
