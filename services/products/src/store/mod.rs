//! The products database: `products` (details, images, stock, version), `stock_ledger` (every
//! stock movement, with its reason) and `reservations` (one per order the saga asked about).
//!
//! Every change writes its event to the outbox in the same transaction. Product writes are
//! read-modify-write guarded by the product's `version`: a write whose product changed since it
//! was read matches nothing and is run again, so two writers never lose each other's change.
//!
//! The types and the shared plumbing are here; the catalog's operations in `catalog.rs`, the
//! stock ledger and the saga's reservations in `inventory.rs`.

mod batch;
mod catalog;
mod inventory;

pub use crate::domain::{InventoryOp, ReservationState};
use inventory::{movement_of, rejected, reserved, state_bson, stock_set};
use storefront_events::{OrderId, ProductId};

use futures::TryStreamExt;

/// A category of the catalog and how many live products are in it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "ProductCategory")]
pub struct CategoryCount {
    pub category: String,
    pub count: i64,
}
use mongodb::{
    ClientSession, Collection, IndexModel,
    bson::{self, Document, doc},
    options::ReturnDocument,
};
use serde::{Deserialize, Serialize};
use storefront_events::{
    Envelope, Event, Money,
    products::{
        ImageRef, InventoryRejected, InventoryReserved, LineQuantity, ProductCreated,
        ProductDeleted, ProductSnapshot, ProductUpdated, ShortLine, Stock, StockChanged,
        StockMovement,
    },
};
use storefront_kit::{
    mongo::{self, Mongo, Transient},
    outbox::{AppendError, Outbox},
    retry_transient,
};
use uuid::Uuid;

pub const SOURCE: &str = "products";

/// A product as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductDoc {
    #[serde(rename = "_id")]
    pub id: ProductId,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub images: Vec<ImageRef>,
    pub stock: Stock,
    pub deleted: bool,
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    /// How often customers looked at it, all time (`crate::analytics`). Not part of the version,
    /// and never written by a product write: only `$inc`ed by the counter.
    #[serde(default)]
    pub views: i64,
}

impl ProductDoc {
    pub fn snapshot(&self) -> ProductSnapshot {
        ProductSnapshot {
            product_id: self.id,
            title: self.title.clone(),
            description: self.description.clone(),
            category: self.category.clone(),
            price: self.price.clone(),
            images: self.images.clone(),
            stock: self.stock,
            deleted: self.deleted,
            created_at: self.created_at.to_chrono(),
            updated_at: self.updated_at.to_chrono(),
        }
    }
}

/// One stock movement of the ledger (the stock view shows it as `LedgerEntryView`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    #[serde(rename = "_id")]
    pub id: String,
    pub product_id: String,
    pub movement: StockMovement,
    /// The signed change of `available`.
    pub delta: i64,
    /// The stock after the movement.
    pub stock: Stock,
    /// The product's version after the movement.
    pub version: i64,
    /// The order of a saga's movement (`reserved`, `released`, `sold`).
    #[serde(default)]
    pub order_id: Option<String>,
    /// An adjustment's reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// The admin behind an adjustment.
    #[serde(default)]
    pub actor: Option<String>,
    pub at: bson::DateTime,
}

impl LedgerEntry {
    fn new(
        product: &ProductDoc,
        movement: StockMovement,
        delta: i64,
        order_id: Option<OrderId>,
        reason: Option<String>,
        actor: Option<String>,
    ) -> Self {
        LedgerEntry {
            id: Uuid::now_v7().to_string(),
            product_id: product.id.to_string(),
            movement,
            delta,
            stock: product.stock,
            version: product.version,
            order_id: order_id.map(|o| o.to_string()),
            reason,
            actor,
            at: now(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReservationDoc {
    /// The order id.
    #[serde(rename = "_id")]
    pub id: String,
    pub state: ReservationState,
    pub lines: Vec<LineQuantity>,
    pub updated_at: bson::DateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such product")]
    NotFound,
    #[error("the product is at version {current}, not {expected}")]
    VersionMismatch { expected: i64, current: i64 },
    #[error("{0}")]
    Invalid(String),
    /// The product changed between read and write; the transaction is run again.
    #[error("the product changed while it was being written")]
    Raced,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    #[error("outbox: {0}")]
    Outbox(#[source] AppendError),
    #[error("a document that cannot be stored: {0}")]
    Encode(#[from] bson::ser::Error),
    #[error("a document that cannot be stored: {0}")]
    Raw(#[from] bson::raw::Error),
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
            StoreError::NotFound => Error::NotFound("no such product".into()),
            StoreError::VersionMismatch { .. } => Error::PreconditionFailed(format!(
                "{e}: someone changed it since you read it; reload and apply your change again"
            )),
            StoreError::Invalid(message) => Error::Conflict {
                kind: "stock-conflict",
                detail: message,
            },
            // A database that does not answer is a 503 (kit's mapping), not a bug.
            StoreError::Mongo(e) => e.into(),
            other => Error::internal(other),
        }
    }
}

/// Which version a write expects: the one in `If-Match`, or any (`If-Match: *`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Version(i64),
    Any,
}

/// What a product write publishes.
pub enum Change {
    Updated,
    Deleted,
    Stock {
        movement: StockMovement,
        delta: i64,
        reason: Option<String>,
        actor: Option<String>,
    },
}

/// Filters and order of a product list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub text: Option<String>,
    pub sort: Sort,
    pub page: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    #[default]
    Newest,
    PriceAsc,
    PriceDesc,
    /// Most viewed first.
    Popular,
}

pub use storefront_kit::mongo::Page;

/// The outcome of handling an order for inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    Rejected(Vec<ShortLine>),
    /// Nothing to do: handled before, or the order ended first.
    Unchanged,
}

#[derive(Clone)]
pub struct Store {
    mongo: Mongo,
    products: Collection<ProductDoc>,
    ledger: Collection<LedgerEntry>,
    reservations: Collection<ReservationDoc>,
    outbox: Outbox,
}

impl Store {
    /// A transaction on the products database, for a use case that runs outside a consumer's.
    pub async fn begin(&self) -> Result<ClientSession, StoreError> {
        Ok(self.mongo.begin().await?)
    }

    /// Commits `session` and wakes the outbox relay for the events written in it.
    pub async fn commit(&self, session: ClientSession) -> Result<(), StoreError> {
        Ok(self.outbox.commit(session).await?)
    }
}

fn now() -> bson::DateTime {
    bson::DateTime::now()
}

impl Store {
    pub fn new(mongo: Mongo, outbox: Outbox) -> Self {
        Store {
            products: mongo.db.collection("products"),
            ledger: mongo.db.collection("stock_ledger"),
            reservations: mongo.db.collection("reservations"),
            mongo,
            outbox,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        for keys in [
            doc! { "deleted": 1, "created_at": -1, "_id": -1 },
            doc! { "deleted": 1, "price.amount": 1, "_id": 1 },
            doc! { "deleted": 1, "category": 1, "created_at": -1 },
            doc! { "deleted": 1, "views": -1, "_id": -1 },
        ] {
            self.products
                .create_index(IndexModel::builder().keys(keys).build())
                .await?;
        }
        self.ledger
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "product_id": 1, "_id": -1 })
                    .build(),
            )
            .await?;
        self.outbox.ensure_indexes().await
    }
}
