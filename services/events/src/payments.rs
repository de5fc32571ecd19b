//! Events of the `payments` aggregate, published by the payments service on `{prefix}.payments`.
//!
//! One payment per order, keyed by the order id: `payment.succeeded` (orders completes the order,
//! products sells the stock, cart empties), `payment.failed` (a declined attempt; the order stays
//! payable), `payment.refunded` (money returned for an order that ended unpaid on our side; orders
//! asks for it with `order.refund_due`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Event, Money, OrderId, Topic, UserId};

/// An order was paid in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentSucceeded {
    pub order_id: OrderId,
    pub user_id: UserId,
    /// The payment provider's id (a Stripe PaymentIntent id).
    pub payment_intent_id: String,
    pub amount: Money,
    pub succeeded_at: DateTime<Utc>,
}

impl Event for PaymentSucceeded {
    const TYPE: &'static str = "payment.succeeded";
    const TOPIC: Topic = Topic::Payments;
}

/// One attempt to pay an order failed; the order can still be paid until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentFailed {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub payment_intent_id: String,
    /// The provider's reason, for the customer, e.g. "Your card was declined."
    pub reason: String,
    /// Which attempt of this order's payment failed (1, 2, …).
    pub attempt: u32,
    pub failed_at: DateTime<Utc>,
}

impl Event for PaymentFailed {
    const TYPE: &'static str = "payment.failed";
    const TOPIC: Topic = Topic::Payments;
}

/// The money of a payment went back to the customer (the order was cancelled as it was paid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRefunded {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub payment_intent_id: String,
    pub amount: Money,
    /// The provider's id of the refund (a Stripe refund id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    pub refunded_at: DateTime<Utc>,
}

impl Event for PaymentRefunded {
    const TYPE: &'static str = "payment.refunded";
    const TOPIC: Topic = Topic::Payments;
}
