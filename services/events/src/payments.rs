//! Events of the `payments` aggregate, published by the payments service on `{prefix}.payments`.
//!
//! The products service consumes `payment.succeeded` to turn an order's reservation into a sale.
//! The remaining payment events are added with the payments service.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, Money, Topic};

/// An order was paid in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentSucceeded {
    pub order_id: Uuid,
    pub user_id: Uuid,
    /// The payment provider's id (a Stripe PaymentIntent id).
    pub payment_intent_id: String,
    pub amount: Money,
    pub succeeded_at: DateTime<Utc>,
}

impl Event for PaymentSucceeded {
    const TYPE: &'static str = "payment.succeeded";
    const TOPIC: Topic = Topic::Payments;
}
