//! `POST /api/payments/webhook`: Stripe tells us how a PaymentIntent ended. The signature
//! (`Stripe-Signature`, HMAC-SHA256 with the endpoint's secret, 300 s tolerance) is checked before
//! anything is read; the outcome is recorded (`app::charging::record`) unless the confirmation
//! already did.

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode};
use storefront_events::OrderId;
use storefront_kit::{Error, ExposeSecret};
use stripe_webhook::{EventObject, Webhook};

use crate::{AppState, app::charging};

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Error> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::BadRequest("missing Stripe-Signature".into()))?;
    let payload = std::str::from_utf8(&body)
        .map_err(|_| Error::BadRequest("the payload is not UTF-8".into()))?;
    let event = Webhook::construct_event(payload, signature, state.webhook_secret.expose_secret())
        .map_err(|e| Error::BadRequest(format!("webhook refused: {e}")))?;
    let intent = match event.data.object {
        EventObject::PaymentIntentSucceeded(intent)
        | EventObject::PaymentIntentPaymentFailed(intent) => intent,
        _ => return Ok(StatusCode::NO_CONTENT),
    };
    let Some(order_id) = intent
        .metadata
        .get("order_id")
        .and_then(|id| id.parse::<OrderId>().ok())
    else {
        tracing::warn!(intent = %intent.id.as_str(), "a PaymentIntent without our order id");
        return Ok(StatusCode::NO_CONTENT);
    };
    let recorded = charging::record(&state, order_id, &intent).await?;
    tracing::info!(%order_id, recorded, "webhook handled");
    Ok(StatusCode::NO_CONTENT)
}
