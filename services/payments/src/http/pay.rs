//! `POST /api/payments`: pay one of my orders with a payment method from Stripe.js.
//!
//! orders holds the order for payment first (`crate::orders`): that says the order is mine and
//! payable, waits for its stock if it is still being reserved, gives the amount (never the
//! client's) and keeps a cancel from ending the order while Stripe has it. Then the payment record
//! is claimed, so a second request for the same order (a double click, a retry) cannot reach
//! Stripe while the first is there; Stripe's idempotency keys cover the rest.

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
    domain::Transition,
    gateway::{Outcome, outcome},
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
    let order = state.orders.hold(&user.token, order_id).await?;
    if order.user_id != user.claims.sub {
        return Err(not_found());
    }
    let payment = state.store.claim(&order).await?;
    let order_id = payment.id;
    let (status, client_secret, reason) = match charge(&state, &payment, method).await {
        Ok(result) => result,
        Err(e) => {
            // The outcome is unknown: free the claim; the next attempt asks Stripe first.
            let _ = state.store.release(order_id, Transition::AwaitAction).await;
            return Err(Error::Unavailable(e.to_string()));
        }
    };
    let code = match status {
        PaymentStatus::Succeeded => StatusCode::OK,
        PaymentStatus::Failed => {
            return Err(Error::PaymentDeclined(reason.unwrap_or_default()));
        }
        _ => StatusCode::ACCEPTED,
    };
    let view = PaymentView::of(&payment, status, client_secret);
    Ok((code, Json(view)).into_response())
}

/// Talks to Stripe for one claimed attempt and records what came of it.
async fn charge(
    state: &AppState,
    payment: &PaymentDoc,
    method: &str,
) -> Result<(PaymentStatus, Option<String>, Option<String>), crate::gateway::GatewayError> {
    let order_id = payment.id;
    let store_error =
        |e: crate::store::StoreError| crate::gateway::GatewayError::Unavailable(e.to_string());
    // The order's one intent: the one an earlier attempt recorded, whatever the provider's
    // idempotency keys still remember (the local stand-in remembers none: a new intent there
    // would be a second charge). A new one is recorded before it is confirmed, so no intent is
    // ever charged that the record does not name.
    let intent = match &payment.payment_intent_id {
        Some(recorded) => state.gateway.retrieve(recorded).await?,
        None => {
            let intent = state.gateway.intent(order_id, &payment.amount).await?;
            state
                .store
                .set_intent(order_id, intent.id.as_str())
                .await
                .map_err(store_error)?;
            intent
        }
    };
    let intent_id = intent.id.as_str().to_owned();
    // Paid by an earlier attempt whose answer we lost: record it, charge nothing more.
    let result = match outcome(&intent) {
        Outcome::Succeeded => Outcome::Succeeded,
        _ => {
            state
                .gateway
                .confirm(&intent, method, payment.attempts)
                .await?
        }
    };
    Ok(match result {
        Outcome::Succeeded => {
            state
                .store
                .succeeded(order_id, &intent_id)
                .await
                .map_err(store_error)?;
            (PaymentStatus::Succeeded, None, None)
        }
        Outcome::RequiresAction { client_secret } => {
            state
                .store
                .release(order_id, Transition::AwaitAction)
                .await
                .map_err(store_error)?;
            (PaymentStatus::RequiresAction, Some(client_secret), None)
        }
        Outcome::Processing => {
            state
                .store
                .release(order_id, Transition::AwaitAction)
                .await
                .map_err(store_error)?;
            (PaymentStatus::RequiresAction, None, None)
        }
        Outcome::Failed { reason } => {
            state
                .store
                .failed(order_id, &intent_id, &reason)
                .await
                .map_err(store_error)?;
            (PaymentStatus::Failed, None, Some(reason))
        }
    })
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
