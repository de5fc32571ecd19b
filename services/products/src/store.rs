//! The products database: `products` (details, images, stock, version), `stock_ledger` (every
//! stock movement, with its reason) and `reservations` (one per order the saga asked about).
//!
//! Every change writes its event to the outbox in the same transaction. Product writes are
//! read-modify-write guarded by the product's `version`: a write whose product changed since it
//! was read matches nothing and is run again, so two writers never lose each other's change.

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
    options::{FindOptions, ReturnDocument},
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
    mongo::{Mongo, Transient},
    outbox::{AppendError, Outbox},
    retry_transient,
};
use uuid::Uuid;

pub const SOURCE: &str = "products";

/// A product as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductDoc {
    #[serde(rename = "_id")]
    pub id: String,
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
    pub fn uuid(&self) -> Uuid {
        self.id.parse().unwrap_or_default()
    }

    pub fn snapshot(&self) -> ProductSnapshot {
        ProductSnapshot {
            product_id: self.uuid(),
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
        order_id: Option<Uuid>,
        reason: Option<String>,
        actor: Option<String>,
    ) -> Self {
        LedgerEntry {
            id: Uuid::now_v7().to_string(),
            product_id: product.id.clone(),
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

/// Where an order's reservation is. `CancelledFirst` and `PaidFirst` record an `order.cancelled`
/// or `order.completed` that arrived before `order.created`, so the late `order.created` does
/// the right thing instead of holding stock for an order that is already over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Reserved,
    Rejected,
    Released,
    Sold,
    CancelledFirst,
    PaidFirst,
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
    Outbox(String),
    #[error("a product that cannot be stored: {0}")]
    Encode(#[from] bson::ser::Error),
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

pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

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

fn now() -> bson::DateTime {
    bson::DateTime::now()
}

/// What a product write sets: every field but the id and the view count, which the analytics
/// consumer increments outside the version. Setting the count this write read would depend on
/// the database noticing the increment in between as a write conflict; not setting it cannot
/// put an older count back.
fn written_fields(product: &ProductDoc) -> Result<Document, StoreError> {
    let mut fields = bson::to_document(product)?;
    fields.remove("_id");
    fields.remove("views");
    Ok(fields)
}

impl ListQuery {
    fn filter(&self) -> Document {
        let mut filter = doc! { "deleted": false };
        if let Some(category) = &self.category {
            filter.insert("category", category);
        }
        let mut price = Document::new();
        if let Some(min) = self.min_price {
            price.insert("$gte", min);
        }
        if let Some(max) = self.max_price {
            // `< max + 1`, the same as `<= max` for integer minor units. SecantusDB's index scan
            // drops the upper bound of `$lte` (pinned by the price-range test).
            price.insert("$lt", max.saturating_add(1));
        }
        if !price.is_empty() {
            filter.insert("price.amount", price);
        }
        if self.in_stock {
            filter.insert("stock.available", doc! { "$gt": 0_i64 });
        }
        if let Some(text) = &self.text {
            let pattern = storefront_kit::validate::literal_pattern(text);
            filter.insert(
                "$or",
                vec![
                    doc! { "title": { "$regex": &pattern, "$options": "i" } },
                    doc! { "description": { "$regex": &pattern, "$options": "i" } },
                ],
            );
        }
        filter
    }

    fn order(&self) -> Document {
        match self.sort {
            Sort::Newest => doc! { "created_at": -1, "_id": -1 },
            Sort::PriceAsc => doc! { "price.amount": 1, "_id": 1 },
            Sort::PriceDesc => doc! { "price.amount": -1, "_id": -1 },
            Sort::Popular => doc! { "views": -1, "_id": -1 },
        }
    }
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

    /// Creates a product (version 1) with its initial stock, and publishes `product.created`.
    pub async fn create(&self, product: &ProductDoc, actor: &str) -> Result<(), StoreError> {
        retry_transient!(self.create_once(product, actor).await)
    }

    async fn create_once(&self, product: &ProductDoc, actor: &str) -> Result<(), StoreError> {
        let mut session = self.mongo.begin().await?;
        self.products
            .insert_one(product)
            .session(&mut session)
            .await?;
        // The initial stock is in the ledger; its event is `product.created` itself.
        if product.stock.available > 0 {
            let entry = LedgerEntry::new(
                product,
                StockMovement::Adjusted,
                product.stock.available,
                None,
                Some("initial stock".into()),
                Some(actor.to_owned()),
            );
            self.ledger.insert_one(&entry).session(&mut session).await?;
        }
        let event = Envelope::new(
            SOURCE,
            &product.id,
            1,
            ProductCreated {
                product: product.snapshot(),
            },
        );
        self.emit(&mut session, event).await?;
        self.outbox.commit(session).await.map_err(StoreError::from)
    }

    /// Publishes every product's current snapshot as `product.updated` at its current version,
    /// so a replica that missed events (a new consumer, a broker that lost its topics) catches up;
    /// replicas that are current ignore them. Returns how many it published.
    pub async fn resync(&self) -> Result<usize, StoreError> {
        let mut products = self.products.find(doc! {}).await?;
        let mut count = 0;
        while let Some(product) = products.try_next().await? {
            retry_transient!(
                async {
                    let mut session = self.mongo.begin().await?;
                    let event = Envelope::new(
                        SOURCE,
                        &product.id,
                        product.version as u64,
                        ProductUpdated {
                            product: product.snapshot(),
                        },
                    );
                    self.emit(&mut session, event).await?;
                    self.outbox.commit(session).await.map_err(StoreError::from)
                }
                .await
            )?;
            count += 1;
        }
        Ok(count)
    }

    /// Whether any product, deleted or not, was ever created.
    pub async fn has_any_product(&self) -> Result<bool, StoreError> {
        Ok(self.products.find_one(doc! {}).await?.is_some())
    }

    /// A product that is not deleted.
    pub async fn get(&self, id: Uuid) -> Result<Option<ProductDoc>, StoreError> {
        Ok(self
            .products
            .find_one(doc! { "_id": id.to_string(), "deleted": false })
            .await?)
    }

    pub async fn list(&self, query: &ListQuery) -> Result<Page<ProductDoc>, StoreError> {
        let filter = query.filter();
        let total = self.products.count_documents(filter.clone()).await?;
        let options = FindOptions::builder()
            .sort(query.order())
            .skip(query.page.saturating_sub(1) * query.size)
            .limit(query.size as i64)
            .build();
        let items = self
            .products
            .find(filter)
            .with_options(options)
            .await?
            .try_collect()
            .await?;
        Ok(Page { items, total })
    }

    /// Every category live products are in, with how many, by name.
    pub async fn categories(&self) -> Result<Vec<CategoryCount>, StoreError> {
        let pipeline = [
            doc! { "$match": { "deleted": false } },
            doc! { "$group": { "_id": "$category", "count": { "$sum": 1 } } },
            doc! { "$sort": { "_id": 1 } },
        ];
        let mut found = Vec::new();
        let mut cursor = self.products.aggregate(pipeline).await?;
        while let Some(group) = cursor.try_next().await? {
            let count = match group.get("count") {
                Some(bson::Bson::Int32(n)) => i64::from(*n),
                Some(bson::Bson::Int64(n)) => *n,
                Some(bson::Bson::Double(n)) => *n as i64,
                _ => 0,
            };
            if let Ok(category) = group.get_str("_id") {
                found.push(CategoryCount {
                    category: category.to_owned(),
                    count,
                });
            }
        }
        Ok(found)
    }

    /// Reads a live product, lets `edit` change it, and writes it back one version up with the
    /// event `change` names, unless someone else wrote it in between (then it all runs again).
    pub async fn modify<F>(
        &self,
        id: Uuid,
        expect: Expect,
        edit: F,
    ) -> Result<ProductDoc, StoreError>
    where
        F: Fn(&mut ProductDoc) -> Result<Change, StoreError>,
    {
        retry_transient!(self.modify_once(id, expect, &edit).await)
    }

    async fn modify_once<F>(
        &self,
        id: Uuid,
        expect: Expect,
        edit: &F,
    ) -> Result<ProductDoc, StoreError>
    where
        F: Fn(&mut ProductDoc) -> Result<Change, StoreError>,
    {
        let mut session = self.mongo.begin().await?;
        let current = self
            .products
            .find_one(doc! { "_id": id.to_string(), "deleted": false })
            .session(&mut session)
            .await?
            .ok_or(StoreError::NotFound)?;
        if let Expect::Version(expected) = expect
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: current.version,
            });
        }
        let mut product = current.clone();
        let change = edit(&mut product)?;
        product.version = current.version + 1;
        product.updated_at = now();
        if matches!(change, Change::Deleted) {
            product.deleted = true;
        }
        let written = self
            .products
            .update_one(
                doc! { "_id": &current.id, "version": current.version },
                doc! { "$set": written_fields(&product)? },
            )
            .session(&mut session)
            .await?;
        if written.matched_count == 0 {
            return Err(StoreError::Raced);
        }
        let version = product.version as u64;
        match change {
            Change::Updated => {
                let event = Envelope::new(
                    SOURCE,
                    &product.id,
                    version,
                    ProductUpdated {
                        product: product.snapshot(),
                    },
                );
                self.emit(&mut session, event).await?;
            }
            Change::Deleted => {
                let event = Envelope::new(
                    SOURCE,
                    &product.id,
                    version,
                    ProductDeleted {
                        product_id: product.uuid(),
                        deleted_at: product.updated_at.to_chrono(),
                    },
                );
                self.emit(&mut session, event).await?;
            }
            Change::Stock {
                movement,
                delta,
                reason,
                actor,
            } => {
                self.record(&mut session, &product, movement, delta, None, reason, actor)
                    .await?;
            }
        }
        self.outbox.commit(session).await?;
        Ok(product)
    }

    /// Writes one stock movement to the ledger and publishes `stock.changed` for `product` (as it
    /// is after the movement).
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        session: &mut ClientSession,
        product: &ProductDoc,
        movement: StockMovement,
        delta: i64,
        order_id: Option<Uuid>,
        reason: Option<String>,
        actor: Option<String>,
    ) -> Result<(), StoreError> {
        let entry = LedgerEntry::new(product, movement, delta, order_id, reason.clone(), actor);
        self.ledger
            .insert_one(&entry)
            .session(&mut *session)
            .await?;
        let event = Envelope::new(
            SOURCE,
            &product.id,
            product.version as u64,
            StockChanged {
                product_id: product.uuid(),
                movement,
                delta,
                stock: product.stock,
                order_id,
                reason,
            },
        );
        self.emit(session, event).await
    }

    /// The newest ledger entries of a product, newest first.
    pub async fn ledger(&self, id: Uuid, limit: i64) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(self
            .ledger
            .find(doc! { "product_id": id.to_string() })
            .sort(doc! { "_id": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Reserves every line of an order in its own transaction (what the `order.created` handler
    /// does inside the consumer's). Runs again when a product changed under it.
    pub async fn reserve(
        &self,
        order_id: Uuid,
        lines: &[LineQuantity],
    ) -> Result<Reservation, StoreError> {
        retry_transient!(
            async {
                let mut session = self.mongo.begin().await?;
                let outcome = self.reserve_in(&mut session, order_id, lines).await?;
                self.outbox.commit(session).await?;
                Ok::<_, StoreError>(outcome)
            }
            .await
        )
    }
}

fn state_bson(state: ReservationState) -> Result<bson::Bson, StoreError> {
    bson::to_bson(&state).map_err(|e| StoreError::Outbox(e.to_string()))
}

impl Store {
    async fn reservation(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
    ) -> Result<Option<ReservationDoc>, StoreError> {
        Ok(self
            .reservations
            .find_one(doc! { "_id": order_id.to_string() })
            .session(session)
            .await?)
    }

    async fn set_reservation(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
        state: ReservationState,
        lines: &[LineQuantity],
    ) -> Result<(), StoreError> {
        let record = ReservationDoc {
            id: order_id.to_string(),
            state,
            lines: lines.to_vec(),
            updated_at: now(),
        };
        self.reservations
            .replace_one(doc! { "_id": &record.id }, &record)
            .upsert(true)
            .session(session)
            .await?;
        Ok(())
    }

    /// Saga step 2: hold every line or none. Lines must be merged (one per product, sorted); no
    /// lines at all is a rejection.
    pub async fn reserve_in(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
        lines: &[LineQuantity],
    ) -> Result<Reservation, StoreError> {
        // The reservation is written first, as held, in one command that also says whether there
        // was one: nothing (the usual case) or an order that was paid first.
        let mut fresh = bson::to_raw_document_buf(&ReservationDoc {
            id: order_id.to_string(),
            state: ReservationState::Reserved,
            lines: lines.to_vec(),
            updated_at: now(),
        })
        .map_err(|e| StoreError::Outbox(e.to_string()))?
        .to_document()
        .map_err(|e| StoreError::Outbox(e.to_string()))?;
        // As the driver would store it (ids as binary), less the id the filter gives.
        fresh.remove("_id");
        let before = self
            .reservations
            .find_one_and_update(
                doc! { "_id": order_id.to_string() },
                doc! { "$setOnInsert": fresh },
            )
            .upsert(true)
            .session(&mut *session)
            .await?;
        let sell_at_once = match before {
            None => false,
            Some(r) if r.state == ReservationState::PaidFirst => true,
            Some(_) => return Ok(Reservation::Unchanged),
        };
        let ids: Vec<String> = lines.iter().map(|l| l.product_id.to_string()).collect();
        let found: Vec<ProductDoc> = self
            .products
            .find(doc! { "_id": { "$in": &ids } })
            .session(&mut *session)
            .await?
            .stream(session)
            .try_collect()
            .await?;
        let mut short = Vec::new();
        let mut held = Vec::new();
        for line in lines {
            match found.iter().find(|p| p.uuid() == line.product_id) {
                Some(p) if !p.deleted && p.stock.available >= line.quantity => {
                    held.push((p.clone(), line.quantity))
                }
                Some(p) => short.push(ShortLine {
                    product_id: line.product_id,
                    requested: line.quantity,
                    available: if p.deleted { 0 } else { p.stock.available },
                }),
                None => short.push(ShortLine {
                    product_id: line.product_id,
                    requested: line.quantity,
                    available: 0,
                }),
            }
        }
        if lines.is_empty() || !short.is_empty() {
            if sell_at_once {
                tracing::error!(%order_id, ?short, "an order paid before it was reserved cannot be supplied; it needs a refund");
            }
            self.set_reservation(session, order_id, ReservationState::Rejected, lines)
                .await?;
            let reason = if lines.is_empty() {
                "the order has no valid lines".to_owned()
            } else if short.len() == 1 {
                "not enough stock for 1 item".to_owned()
            } else {
                format!("not enough stock for {} items", short.len())
            };
            let event = Envelope::new(
                SOURCE,
                order_id.to_string(),
                1,
                InventoryRejected {
                    order_id,
                    reason,
                    short: short.clone(),
                },
            );
            self.emit(session, event).await?;
            return Ok(Reservation::Rejected(short));
        }
        let (movement, state) = if sell_at_once {
            (StockMovement::Sold, ReservationState::Sold)
        } else {
            (StockMovement::Reserved, ReservationState::Reserved)
        };
        for (mut product, quantity) in held {
            let before = product.version;
            product.stock.available -= quantity;
            if sell_at_once {
                product.stock.sold += quantity;
            } else {
                product.stock.reserved += quantity;
            }
            product.version += 1;
            product.updated_at = now();
            self.write_stock(session, &product, before).await?;
            self.record(
                session,
                &product,
                movement,
                -quantity,
                Some(order_id),
                None,
                None,
            )
            .await?;
        }
        if sell_at_once {
            self.set_reservation(session, order_id, state, lines)
                .await?;
        }
        let event = Envelope::new(
            SOURCE,
            order_id.to_string(),
            1,
            InventoryReserved {
                order_id,
                lines: lines.to_vec(),
            },
        );
        self.emit(session, event).await?;
        Ok(Reservation::Reserved)
    }

    /// Writes `product`'s stock and version if it is still at version `before`.
    async fn write_stock(
        &self,
        session: &mut ClientSession,
        product: &ProductDoc,
        before: i64,
    ) -> Result<(), StoreError> {
        let written = self
            .products
            .update_one(
                doc! { "_id": &product.id, "version": before },
                doc! { "$set": {
                    "stock": bson::to_bson(&product.stock).map_err(|e| StoreError::Outbox(e.to_string()))?,
                    "version": product.version,
                    "updated_at": product.updated_at,
                } },
            )
            .session(session)
            .await?;
        if written.matched_count == 0 {
            return Err(StoreError::Raced);
        }
        Ok(())
    }

    /// Moves every line of a held order: `release` back to available, or (not `release`) to sold.
    async fn settle(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
        lines: &[LineQuantity],
        release: bool,
    ) -> Result<(), StoreError> {
        for line in lines {
            let quantity = line.quantity;
            let (inc, movement, delta) = if release {
                (
                    doc! { "stock.reserved": -quantity, "stock.available": quantity, "version": 1_i64 },
                    StockMovement::Released,
                    quantity,
                )
            } else {
                (
                    doc! { "stock.reserved": -quantity, "stock.sold": quantity, "version": 1_i64 },
                    StockMovement::Sold,
                    0,
                )
            };
            // One command: the increments, and the product as they left it for the ledger and
            // `stock.changed` (the transaction makes a concurrent writer conflict, not interleave).
            let product = self
                .products
                .find_one_and_update(
                    doc! { "_id": line.product_id.to_string() },
                    doc! { "$inc": inc, "$set": { "updated_at": now() } },
                )
                .return_document(ReturnDocument::After)
                .session(&mut *session)
                .await?
                .ok_or(StoreError::NotFound)?;
            self.record(
                session,
                &product,
                movement,
                delta,
                Some(order_id),
                None,
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Moves the order's reservation from `Reserved` to `to` in one command, answering its lines;
    /// `None` when it is not reserved (then read it to see why).
    async fn take_reserved(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
        to: ReservationState,
    ) -> Result<Option<ReservationDoc>, StoreError> {
        let reserved = state_bson(ReservationState::Reserved)?;
        Ok(self
            .reservations
            .find_one_and_update(
                doc! { "_id": order_id.to_string(), "state": reserved },
                doc! { "$set": { "state": state_bson(to)?, "updated_at": now() } },
            )
            .session(session)
            .await?)
    }

    /// Saga step 6: an order ended unpaid; its held stock is available again.
    pub async fn release_in(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
    ) -> Result<bool, StoreError> {
        if let Some(r) = self
            .take_reserved(session, order_id, ReservationState::Released)
            .await?
        {
            self.settle(session, order_id, &r.lines, true).await?;
            return Ok(true);
        }
        match self.reservation(session, order_id).await? {
            Some(r) if r.state == ReservationState::PaidFirst => {
                tracing::error!(%order_id, "an order was cancelled after it was completed; orders never does that");
                Ok(false)
            }
            Some(_) => Ok(false),
            None => {
                self.set_reservation(session, order_id, ReservationState::CancelledFirst, &[])
                    .await?;
                Ok(false)
            }
        }
    }

    /// Saga step 5: an order was completed (paid, and orders kept the money); its held stock is
    /// sold.
    pub async fn sell_in(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
    ) -> Result<bool, StoreError> {
        if let Some(r) = self
            .take_reserved(session, order_id, ReservationState::Sold)
            .await?
        {
            self.settle(session, order_id, &r.lines, false).await?;
            return Ok(true);
        }
        match self.reservation(session, order_id).await? {
            Some(r)
                if matches!(
                    r.state,
                    ReservationState::Released | ReservationState::Rejected
                ) =>
            {
                tracing::error!(%order_id, state = ?r.state, "an order completed whose stock is not held; orders never does that");
                Ok(false)
            }
            Some(_) => Ok(false),
            None => {
                self.set_reservation(session, order_id, ReservationState::PaidFirst, &[])
                    .await?;
                Ok(false)
            }
        }
    }

    pub async fn reservation_state(
        &self,
        order_id: Uuid,
    ) -> Result<Option<ReservationState>, StoreError> {
        Ok(self
            .reservations
            .find_one(doc! { "_id": order_id.to_string() })
            .await?
            .map(|r| r.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_write_sets_every_field_but_the_id_and_the_view_count() {
        let now = bson::DateTime::now();
        let product = ProductDoc {
            id: Uuid::now_v7().to_string(),
            title: "Mug".into(),
            description: String::new(),
            category: "kitchen".into(),
            price: Money {
                amount: 900,
                currency: "USD".into(),
            },
            images: Vec::new(),
            stock: Stock {
                available: 1,
                reserved: 0,
                sold: 0,
            },
            deleted: false,
            version: 2,
            created_at: now,
            updated_at: now,
            views: 41,
        };
        let fields = written_fields(&product).unwrap();
        let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "category",
                "created_at",
                "deleted",
                "description",
                "images",
                "price",
                "stock",
                "title",
                "updated_at",
                "version"
            ]
        );
    }
}
