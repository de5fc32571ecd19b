//! Events of the `orders` aggregate, published by the orders service on `{prefix}.orders`.
//!
//! The products service consumes `order.created` (to reserve stock) and `order.cancelled` (to
//! release it). The remaining order events are added with the orders service.

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
