//! `POST /api/payments`: pay one of my orders with a payment method from Stripe.js (the charge
//! itself is `app::charging`); `GET /api/payments/{order_id}`: its payment.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::OrderId;
use storefront_events::{Money, orders::PriceLine};
use storefront_kit::{
    Error, Json,
    auth::{ActingUser, CurrentUser},
    error::Path,
};
use uuid::Uuid;

use crate::{
    AppState,
    app::charging,
    store::{PaymentDoc, PaymentStatus, RefundDoc},
};

/// Which order to pay, and with what.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PayOrderBody")]
pub struct PayBody {
    /// One of the caller's orders, `awaiting_payment` (or `pending`: its stock is waited for).
    #[schemars(with = "Uuid")]
    order_id: String,
    /// A PaymentMethod id from Stripe.js (`pm_…`).
    payment_method: String,
}

/// A refund of the payment: orders found the order had ended when the money arrived.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "PaymentRefundView")]
pub struct RefundView {
    /// `due` until Stripe confirms it, then `refunded`.
    #[schemars(schema_with = "refund_status")]
    status: &'static str,
    /// orders' reason, for the customer.
    reason: String,
    /// Attempts made so far.
    attempts: u32,
    /// Why the last attempt was not confirmed (while `due`).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn refund_status(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["due", "refunded"] })
}

impl From<&RefundDoc> for RefundView {
    fn from(refund: &RefundDoc) -> Self {
        RefundView {
            status: if refund.refunded_at.is_some() {
                "refunded"
            } else {
                "due"
            },
            reason: refund.reason.clone(),
            attempts: refund.attempts,
            last_error: refund
                .last_error
                .clone()
                .filter(|_| refund.refunded_at.is_none()),
            refunded_at: refund.refunded_at.map(|t| t.to_chrono()),
        }
    }
}

/// The payment of an order (one per order, whatever the number of attempts).
#[derive(Debug, Serialize, JsonSchema)]
pub struct PaymentView {
    /// The order paid.
    order_id: String,
    status: PaymentStatus,
    /// What is charged: the order's total, as orders recorded it.
    amount: Money,
    /// What `amount` is made of beyond the items (shipping, fees, tax), as orders priced it.
    charges: Vec<PriceLine>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// For `requires_action`: hand this to Stripe.js to finish (3-D Secure).
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    /// Attempts made so far.
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    refund: Option<RefundView>,
}

impl PaymentView {
    fn of(payment: &PaymentDoc, status: PaymentStatus, client_secret: Option<String>) -> Self {
        PaymentView {
            order_id: payment.id.to_string(),
            status,
            amount: payment.amount.clone(),
            charges: payment.charges.clone(),
            reason: payment.reason.clone(),
            client_secret,
            attempts: payment.attempts,
            refund: payment.refund.as_ref().map(RefundView::from),
        }
    }
}

fn not_found() -> Error {
    Error::NotFound("no such order".into())
}

pub async fn pay(
    State(state): State<AppState>,
    user: ActingUser,
    Json(body): Json<PayBody>,
) -> Result<Response, Error> {
    let method = body.payment_method.trim();
    if !method.starts_with("pm_") || method.len() > 255 {
        return Err(Error::field(
            "payment_method",
            "a PaymentMethod id from Stripe.js (pm_…)",
        ));
    }
    let order_id: OrderId = body.order_id.parse().map_err(|_| not_found())?;
    let charged = charging::charge(&state, &user, order_id, method).await?;
    let code = match charged.status {
        PaymentStatus::Succeeded => StatusCode::OK,
        PaymentStatus::Failed => {
            return Err(Error::PaymentDeclined(charged.reason.unwrap_or_default()));
        }
        _ => StatusCode::ACCEPTED,
    };
    let view = PaymentView::of(&charged.payment, charged.status, charged.client_secret);
    Ok((code, Json(view)).into_response())
}

/// `GET /api/payments/{order_id}`: the payment of my order (an admin sees anyone's). An order
/// with no payment, or someone else's, is not found.
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(order_id): Path<String>,
) -> Result<Json<PaymentView>, Error> {
    let missing = || Error::NotFound("no payment for this order".into());
    let id: OrderId = order_id.parse().map_err(|_| missing())?;
    match state.store.payment(id).await? {
        Some(payment) if payment.user_id == user.sub || user.is_admin() => {
            Ok(Json(PaymentView::of(&payment, payment.status, None)))
        }
        _ => Err(missing()),
    }
}
