//! Events of the `orders` aggregate, published by the orders service on `{prefix}.orders`.
//!
//! State by state (ARCHITECTURE §6): `order.created` (pending), `order.awaiting_payment` (stock
//! held), `order.completed` (paid), `order.cancelled` (from either of the first two). Each carries
//! the order's version. products consumes `order.created` and `order.cancelled`; payments keeps its
//! order replica from all four.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, Money, Topic};

/// One line of an order, with the price and title snapshot taken when it was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub title: String,
    pub unit_price: Money,
    pub quantity: i64,
}

/// An order was placed and is `pending` (saga step 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub created_at: DateTime<Utc>,
}

impl Event for OrderCreated {
    const TYPE: &'static str = "order.created";
    const TOPIC: Topic = Topic::Orders;
}

/// An order ended unpaid: rejected by inventory, expired, or cancelled by its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub reason: String,
    pub cancelled_at: DateTime<Utc>,
}

impl Event for OrderCancelled {
    const TYPE: &'static str = "order.cancelled";
    const TOPIC: Topic = Topic::Orders;
}

/// Every line is held; the order can be paid until `expires_at` (saga step 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderAwaitingPayment {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub total: Money,
    pub expires_at: DateTime<Utc>,
}

impl Event for OrderAwaitingPayment {
    const TYPE: &'static str = "order.awaiting_payment";
    const TOPIC: Topic = Topic::Orders;
}

/// The order was paid (saga step 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCompleted {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub total: Money,
    pub completed_at: DateTime<Utc>,
}

impl Event for OrderCompleted {
    const TYPE: &'static str = "order.completed";
    const TOPIC: Topic = Topic::Orders;
}
