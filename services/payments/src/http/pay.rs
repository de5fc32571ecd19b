//! `POST /api/payments`: pay one of my orders with a payment method from Stripe.js.
//!
//! The amount comes from payments' order replica, never from the client. The payment record is
//! claimed first, so a second request for the same order (a double click, a retry) cannot reach
//! Stripe while the first is there; Stripe's idempotency keys cover the rest.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use storefront_events::Money;
use storefront_kit::{Error, Json, auth::CurrentUser, error::Path};
use uuid::Uuid;

use crate::{
    AppState,
    gateway::{Outcome, outcome},
    store::{OrderReplica, PaymentDoc, PaymentStatus},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayBody {
    order_id: String,
    /// A PaymentMethod id from Stripe.js (`pm_…`).
    payment_method: String,
}

#[derive(Debug, Serialize)]
pub struct PaymentView {
    order_id: String,
    status: PaymentStatus,
    amount: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// For `requires_action`: hand this to Stripe.js to finish (3-D Secure).
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    attempts: u32,
}

impl PaymentView {
    fn of(payment: &PaymentDoc, status: PaymentStatus, client_secret: Option<String>) -> Self {
        PaymentView {
            order_id: payment.id.clone(),
            status,
            amount: payment.amount.clone(),
            reason: payment.reason.clone(),
            client_secret,
            attempts: payment.attempts,
        }
    }
}

fn not_found() -> Error {
    Error::NotFound("no such order".into())
}

/// My order, as payments knows it; anyone else's is not found.
async fn my_order(state: &AppState, user: Uuid, raw: &str) -> Result<OrderReplica, Error> {
    let id: Uuid = raw.parse().map_err(|_| not_found())?;
    match state.store.order(id).await? {
        Some(order) if order.user_id == user.to_string() => Ok(order),
        _ => Err(not_found()),
    }
}

pub async fn pay(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<PayBody>,
) -> Result<Response, Error> {
    let method = body.payment_method.trim();
    if !method.starts_with("pm_") || method.len() > 255 {
        return Err(Error::field(
            "payment_method",
            "a PaymentMethod id from Stripe.js (pm_…)",
        ));
    }
    let order = my_order(&state, user.sub, &body.order_id).await?;
    match order.state.as_str() {
        "awaiting_payment" => {}
        "pending" => {
            return Err(Error::Conflict {
                kind: "order-not-payable",
                detail: "the order's stock is still being reserved; try again in a moment".into(),
            });
        }
        "completed" => return Err(crate::store::StoreError::AlreadyPaid.into()),
        other => {
            return Err(Error::Conflict {
                kind: "order-not-payable",
                detail: format!("the order is {other}"),
            });
        }
    }
    let payment = state.store.claim(&order).await?;
    let order_id = payment.order();
    let (status, client_secret, reason) = match charge(&state, &payment, method).await {
        Ok(result) => result,
        Err(e) => {
            // The outcome is unknown: free the claim; the next attempt asks Stripe first.
            let _ = state
                .store
                .release(order_id, PaymentStatus::RequiresAction)
                .await;
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
    let order_id = payment.order();
    let intent = state.gateway.intent(order_id, &payment.amount).await?;
    let intent_id = intent.id.as_str().to_owned();
    let _ = state.store.set_intent(order_id, &intent_id).await;
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
    let store_error =
        |e: crate::store::StoreError| crate::gateway::GatewayError::Unavailable(e.to_string());
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
                .release(order_id, PaymentStatus::RequiresAction)
                .await
                .map_err(store_error)?;
            (PaymentStatus::RequiresAction, Some(client_secret), None)
        }
        Outcome::Processing => {
            state
                .store
                .release(order_id, PaymentStatus::RequiresAction)
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

/// `GET /api/payments/{order_id}`: the payment of my order.
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(order_id): Path<String>,
) -> Result<Json<PaymentView>, Error> {
    let order = my_order(&state, user.sub, &order_id).await?;
    let payment = state
        .store
        .payment(order.id.parse().unwrap_or_default())
        .await?
        .ok_or_else(|| Error::NotFound("this order has no payment yet".into()))?;
    Ok(Json(PaymentView::of(&payment, payment.status, None)))
}
