//! Events of the `orders` aggregate, published by the orders service on `{prefix}.orders`.
//!
//! State by state (docs/architecture.md §6): `order.created` (pending), `order.awaiting_payment`
//! (stock held), `order.completed` (paid), `order.cancelled` (from either of the first two). orders
//! owns the order's fate, so money that arrives for an order that ended unpaid becomes
//! `order.refund_due` (payments refunds it) and then `order.refunded`. Each event carries the
//! order's version (docs/saga.md).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Event, Money, OrderId, ProductId, Topic, UserId};

/// `POST /api/orders` and `POST /api/orders/quote` as another service sends them (cart's checkout
/// and its quote). orders reads a body leniently, to name each bad field of a client's in its 422
/// (`services/orders/src/http/orders/placing.rs`); a test there reads this type's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub lines: Vec<crate::products::LineQuantity>,
}

/// What another service reads of the order orders answered a placing with (the whole answer is
/// orders' order view, `docs/api/orders.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlacedOrder {
    pub id: OrderId,
    pub state: OrderState,
}

// As orders' API shows it and its events imply (`order.created`: pending, then
// `order.awaiting_payment`, `order.completed` or `order.cancelled`). The transitions are orders'
// own (`services/orders/src/domain/state.rs`); cart, notifications and web read it.
/// Where an order is in its life (docs/architecture.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Placed; waiting for inventory to hold its lines.
    Pending,
    /// Every line is held; the customer can pay until the order expires.
    AwaitingPayment,
    /// Paid. Final.
    Completed,
    /// Rejected by inventory, expired, or cancelled by its owner. Final.
    Cancelled,
}

impl OrderState {
    pub const ALL: [OrderState; 4] = [
        OrderState::Pending,
        OrderState::AwaitingPayment,
        OrderState::Completed,
        OrderState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::AwaitingPayment => "awaiting_payment",
            OrderState::Completed => "completed",
            OrderState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the order is still open (it may yet expire).
    pub fn is_open(self) -> bool {
        matches!(self, OrderState::Pending | OrderState::AwaitingPayment)
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an order, with the price and title snapshot taken when it was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub title: String,
    pub unit_price: Money,
    pub quantity: i64,
}

/// A line of an order's price beyond its items — shipping, a fee, tax or a discount — from the
/// shop's pricing function (docs/api/pricing.md). `total` = the lines' sum + every charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceLine {
    /// `shipping`, `fee`, `tax` or `discount` (a discount is negative).
    pub kind: String,
    /// For the customer, e.g. "Tax (8%)".
    pub label: String,
    pub amount: Money,
}

/// An order was placed and is `pending` (saga step 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCreated {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub lines: Vec<OrderLine>,
    /// Shipping, fees, tax, discounts on top of the lines (included in `total`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charges: Vec<PriceLine>,
    pub total: Money,
    pub created_at: DateTime<Utc>,
    /// The `Idempotency-Key` the order was placed with, if any: cart's checkout finds the lines
    /// it holds for this order by it, even when orders' HTTP answer was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl Event for OrderCreated {
    const TYPE: &'static str = "order.created";
    const TOPIC: Topic = Topic::Orders;
}

/// An order ended unpaid: rejected by inventory, expired, or cancelled by its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    pub user_id: UserId,
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
    pub order_id: OrderId,
    pub user_id: UserId,
    /// Shipping, fees, tax, discounts on top of the lines (included in `total`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charges: Vec<PriceLine>,
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
    pub order_id: OrderId,
    pub user_id: UserId,
    /// Shipping, fees, tax, discounts on top of the lines (included in `total`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charges: Vec<PriceLine>,
    pub total: Money,
    pub completed_at: DateTime<Utc>,
}

impl Event for OrderCompleted {
    const TYPE: &'static str = "order.completed";
    const TOPIC: Topic = Topic::Orders;
}

/// A payment arrived for an order that had already ended unpaid (cancelled, expired, or paid while
/// still pending): orders keeps the order cancelled and asks payments to give the money back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRefundDue {
    pub order_id: OrderId,
    pub user_id: UserId,
    /// The payment provider's id of the payment to refund (a Stripe PaymentIntent id).
    pub payment_intent_id: String,
    pub amount: Money,
    /// Why the money goes back, for the customer.
    pub reason: String,
    pub due_at: DateTime<Utc>,
}

impl Event for OrderRefundDue {
    const TYPE: &'static str = "order.refund_due";
    const TOPIC: Topic = Topic::Orders;
}

/// The refund of a cancelled order's payment went through (payments' `payment.refunded`,
/// recorded on the order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRefunded {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount: Money,
    pub refunded_at: DateTime<Utc>,
}

impl Event for OrderRefunded {
    const TYPE: &'static str = "order.refunded";
    const TOPIC: Topic = Topic::Orders;
}

#[cfg(test)]
mod tests {
    use super::OrderState;

    #[test]
    fn a_state_reads_the_same_in_json_in_pages_and_in_parse() {
        for state in OrderState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(state.to_string(), state.as_str());
            assert_eq!(serde_json::from_str::<OrderState>(&json).unwrap(), state);
            assert_eq!(OrderState::parse(state.as_str()), Some(state));
        }
        assert_eq!(OrderState::parse("shipped"), None);
        assert!(serde_json::from_str::<OrderState>("\"shipped\"").is_err());
        let open: Vec<_> = OrderState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, [OrderState::Pending, OrderState::AwaitingPayment]);
    }
}
