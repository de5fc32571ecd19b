//! What the orders database stores: an order, its lines, its payment and refund.

use mongodb::bson;
use serde::{Deserialize, Serialize};
use storefront_events::{
    Envelope, Money,
    orders::{OrderCreated, OrderLine, PriceLine},
};
use storefront_events::{OrderId, ProductId, UserId};

use super::SOURCE;
use crate::{domain::OrderState, pricing::Priced};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineDoc {
    pub product_id: ProductId,
    pub title: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub line_total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderDoc {
    #[serde(rename = "_id")]
    pub id: OrderId,
    pub user_id: UserId,
    pub lines: Vec<LineDoc>,
    pub total: Money,
    pub state: OrderState,
    /// Why it was cancelled.
    #[serde(default)]
    pub reason: Option<String>,
    /// The number a customer reads ("Order 1042"): unique in the shop. Absent on orders placed
    /// before orders had numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    /// When an open order is cancelled unpaid. Stored, so expiry survives restarts.
    pub expires_at: bson::DateTime,
    /// The `Idempotency-Key` it was placed with (cart's checkout finds its held lines by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Held for payment until then: payments is with Stripe for it, so a cancel answers 409 and
    /// the expiry waits. Not part of the version (nothing another service replicates changes).
    /// Always written, `null` when free, so the version guard can match it.
    #[serde(default)]
    pub paying_until: Option<bson::DateTime>,
    /// The payment that went through, once payments reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentRecord>,
    /// Money to give back: a payment that arrived after the order ended unpaid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundRecord>,
    /// How it was priced: the pricing function's answer (or the fallback's) when it was placed.
    /// `total` is its total. Absent on orders placed before pricing (their total is the lines').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Priced>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub payment_intent_id: String,
    pub amount: Money,
    pub paid_at: bson::DateTime,
}

/// Where a refund is: `due` until Stripe confirms it, then `refunded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "OrderRefundStatus")]
pub enum RefundStatus {
    /// Asked of payments (`order.refund_due`); payments retries until Stripe confirms.
    Due,
    /// Stripe confirmed it (`payment.refunded`).
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub status: RefundStatus,
    pub amount: Money,
    pub payment_intent_id: String,
    pub reason: String,
    pub due_at: bson::DateTime,
    #[serde(default)]
    pub refunded_at: Option<bson::DateTime>,
}

impl OrderDoc {
    pub(super) fn created_event(&self) -> Envelope<OrderCreated> {
        Envelope::new(
            SOURCE,
            self.id,
            self.version as u64,
            OrderCreated {
                order_id: self.id,
                user_id: self.user_id,
                lines: self
                    .lines
                    .iter()
                    .map(|l| OrderLine {
                        product_id: l.product_id,
                        title: l.title.clone(),
                        unit_price: l.unit_price.clone(),
                        quantity: l.quantity,
                    })
                    .collect(),
                charges: self.charges(),
                total: self.total.clone(),
                created_at: self.created_at.to_chrono(),
                idempotency_key: self.idempotency_key.clone(),
            },
        )
    }

    /// Shipping, fees, tax, discounts on top of the lines.
    pub fn charges(&self) -> Vec<PriceLine> {
        self.pricing
            .as_ref()
            .map(|p| p.charges.clone())
            .unwrap_or_default()
    }

    /// Whether payments holds it for payment right now.
    pub fn is_held(&self, now: bson::DateTime) -> bool {
        self.paying_until.is_some_and(|until| until > now)
    }
}
