//! An order as the API shows it, and a page of orders.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use storefront_events::{Money, orders::PriceLine};
use storefront_events::{OrderId, UserId};

use crate::{
    domain::OrderState,
    pricing::{Priced, PricingSource},
    store::{LineDoc, OrderDoc, RefundStatus},
};

/// One line of an order: a snapshot of the product's title and price when it was placed.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderLineView")]
pub struct LineView {
    product_id: String,
    title: String,
    unit_price: Money,
    quantity: i64,
    /// `unit_price` × `quantity`.
    line_total: Money,
}

/// Where an order's charges came from.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderPricingView")]
pub struct PricingView {
    /// `function`, or `fallback` (the built-in rules, because the function did not answer
    /// usefully).
    source: PricingSource,
    /// Why the fallback priced it (with `source: fallback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_reason: Option<String>,
}

impl PricingView {
    pub(super) fn of(priced: &Priced) -> Self {
        PricingView {
            source: priced.source,
            fallback_reason: priced.fallback_reason.clone(),
        }
    }
}

impl LineView {
    pub(super) fn of(l: &LineDoc) -> Self {
        LineView {
            product_id: l.product_id.to_string(),
            title: l.title.clone(),
            unit_price: l.unit_price.clone(),
            quantity: l.quantity,
            line_total: Money {
                amount: l.line_total,
                currency: l.unit_price.currency.clone(),
            },
        }
    }
}

/// The money received for an order.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderPaymentView")]
pub struct PaymentView {
    amount: Money,
    paid_at: DateTime<Utc>,
}

/// Money that arrived after the order ended unpaid, on its way back.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderRefundView")]
pub struct RefundView {
    status: RefundStatus,
    amount: Money,
    reason: String,
    due_at: DateTime<Utc>,
    /// When Stripe confirmed it (with `status: refunded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded_at: Option<DateTime<Utc>>,
}

/// An order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OrderView {
    id: OrderId,
    /// The number a customer reads ("Order 1042"): unique in the shop, growing. Absent on orders
    /// placed before orders had numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<i64>,
    /// Its customer.
    user_id: UserId,
    state: OrderState,
    /// Why it was cancelled (on cancelled orders).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    lines: Vec<LineView>,
    /// The lines' sum.
    subtotal: Money,
    /// Shipping, fees, tax, discounts on top of the lines.
    charges: Vec<PriceLine>,
    /// What the order costs: `subtotal` + every charge.
    total: Money,
    /// Where the charges came from (absent on orders placed before pricing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<PricingView>,
    /// Raised by every visible change; the `ETag` of `GET /api/orders/{id}`.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Until when an open order can be paid.
    expires_at: DateTime<Utc>,
    /// While a payment is with Stripe: until when a cancel waits for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    paying_until: Option<DateTime<Utc>>,
    /// The money received.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment: Option<PaymentView>,
    /// Money received after the order ended unpaid, and where its way back is.
    #[serde(skip_serializing_if = "Option::is_none")]
    refund: Option<RefundView>,
}

impl From<&OrderDoc> for OrderView {
    fn from(order: &OrderDoc) -> Self {
        let now = mongodb::bson::DateTime::now();
        OrderView {
            number: order.number,
            paying_until: order
                .paying_until
                .filter(|_| order.is_held(now))
                .map(|t| t.to_chrono()),
            payment: order.payment.as_ref().map(|p| PaymentView {
                amount: p.amount.clone(),
                paid_at: p.paid_at.to_chrono(),
            }),
            refund: order.refund.as_ref().map(|r| RefundView {
                status: r.status,
                amount: r.amount.clone(),
                reason: r.reason.clone(),
                due_at: r.due_at.to_chrono(),
                refunded_at: r.refunded_at.map(|t| t.to_chrono()),
            }),
            id: order.id,
            user_id: order.user_id,
            state: order.state,
            reason: order.reason.clone(),
            lines: order.lines.iter().map(LineView::of).collect(),
            subtotal: Money {
                amount: order.lines.iter().map(|l| l.line_total).sum(),
                currency: order.total.currency.clone(),
            },
            charges: order.charges(),
            total: order.total.clone(),
            pricing: order.pricing.as_ref().map(PricingView::of),
            version: order.version,
            created_at: order.created_at.to_chrono(),
            updated_at: order.updated_at.to_chrono(),
            expires_at: order.expires_at.to_chrono(),
        }
    }
}

/// A page of orders, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OrderList {
    pub(super) items: Vec<OrderView>,
    pub(super) page: u64,
    pub(super) per_page: u64,
    /// How many orders match, on every page.
    pub(super) total: u64,
}
