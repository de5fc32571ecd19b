//! Events of the `products` aggregate and of inventory, published by the products service on
//! `{prefix}.products`.
//!
//! Stock is part of a product: every stock movement (an admin adjustment, a reservation, its release
//! or its sale) bumps the product's version, so `product.*` and `stock.changed` form one version
//! sequence per product and a replica applies them strictly in order. `inventory.*` events answer
//! the checkout saga for one order; they are keyed by the order id.
//!
//! `product.viewed` is not a change of the product: it counts how often the shop's customers
//! looked at one, in batches, on a topic of its own (`{prefix}.product-views`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Event, Money, OrderId, ProductId, Topic};

/// One stored image of a product. `key` names it within the product; the object lives in the
/// shop's bucket under `products/{product_id}/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    pub key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub primary: bool,
    /// A smaller copy for lists and small screens, when the image is larger than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Thumbnail>,
}

/// The smaller copy of an image, stored beside it under `products/{product_id}/{key}` with the
/// image's type. Images uploaded before thumbnails were made have none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Thumbnail {
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Stock of one product: what can still be bought, what is held for unpaid orders, what was sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stock {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// Everything another service may replicate about a product, after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductSnapshot {
    pub product_id: ProductId,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub images: Vec<ImageRef>,
    pub stock: Stock,
    /// Withdrawn from the shop (only a resync snapshot of a deleted product says true).
    #[serde(default)]
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product was created (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductCreated {
    pub product: ProductSnapshot,
}

impl Event for ProductCreated {
    const TYPE: &'static str = "product.created";
    const TOPIC: Topic = Topic::Products;
}

/// A product's details or images changed: the full snapshot after the change. Also sent by a
/// resync (`products resync`) at the product's current version, for replicas that missed events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdated {
    pub product: ProductSnapshot,
}

impl Event for ProductUpdated {
    const TYPE: &'static str = "product.updated";
    const TOPIC: Topic = Topic::Products;
}

/// A product was withdrawn from the shop. It is kept for the orders that reference it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductDeleted {
    pub product_id: ProductId,
    pub deleted_at: DateTime<Utc>,
}

impl Event for ProductDeleted {
    const TYPE: &'static str = "product.deleted";
    const TOPIC: Topic = Topic::Products;
}

/// Why stock moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockMovement {
    /// An admin set or adjusted the quantity.
    Adjusted,
    /// Held for an unpaid order.
    Reserved,
    /// A hold ended without a sale (order cancelled or expired).
    Released,
    /// A hold became a sale (order paid).
    Sold,
}

/// A product's stock changed. `delta` is the change of `available`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockChanged {
    pub product_id: ProductId,
    pub movement: StockMovement,
    pub delta: i64,
    pub stock: Stock,
    /// The order behind a reservation, release or sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    /// The admin's reason for an adjustment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Event for StockChanged {
    const TYPE: &'static str = "stock.changed";
    const TOPIC: Topic = Topic::Products;
}

/// A quantity of one product within an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineQuantity {
    pub product_id: ProductId,
    pub quantity: i64,
}

/// Every line of an order is held (saga step 2). Version 1 of the order's reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryReserved {
    pub order_id: OrderId,
    pub lines: Vec<LineQuantity>,
}

impl Event for InventoryReserved {
    const TYPE: &'static str = "inventory.reserved";
    const TOPIC: Topic = Topic::Products;
}

/// A line the shop cannot supply: how many were asked for and how many are available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortLine {
    pub product_id: ProductId,
    pub requested: i64,
    pub available: i64,
}

/// Nothing of the order is held: some lines are short or no longer sold (saga step 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryRejected {
    pub order_id: OrderId,
    /// A sentence for the customer, e.g. "not enough stock for 1 item".
    pub reason: String,
    pub short: Vec<ShortLine>,
}

impl Event for InventoryRejected {
    const TYPE: &'static str = "inventory.rejected";
    const TOPIC: Topic = Topic::Products;
}

/// Customers looked at a product `count` times between `from` and `until` (a batch: products
/// counts the reads of `GET /api/products/{id}` that were not an admin's, and publishes one event
/// per product it saw every few seconds, never on a request's path). Keyed by the product; the
/// envelope's version is 0, as nothing of the product changed. Counters built from it are
/// analytics: a batch not yet published when products stops is not counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductViewed {
    pub product_id: ProductId,
    /// At least 1.
    pub count: u64,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Event for ProductViewed {
    const TYPE: &'static str = "product.viewed";
    const TOPIC: Topic = Topic::ProductViews;
}
