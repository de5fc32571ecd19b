//! Charging an order with a payment method from Stripe.js, and recording what Stripe's webhook
//! says of it.
//!
//! orders holds the order for payment first (`crate::orders`): that says the order is mine and
//! payable, waits for its stock if it is still being reserved, gives the amount (never the
//! client's) and keeps a cancel from ending the order while Stripe has it. Then the payment record
//! is claimed, so a second request for the same order (a double click, a retry) cannot reach
//! Stripe while the first is there; Stripe's idempotency keys cover the rest.

use storefront_events::OrderId;
use storefront_kit::{Error, auth::ActingUser};
use stripe_shared::PaymentIntent;

use crate::{
    Inner,
    domain::{PaymentStatus, Transition},
    gateway::{GatewayError, Outcome, outcome},
    store::{PaymentDoc, StoreError},
};

/// What a charge came to.
pub struct Charged {
    /// The payment as it was claimed (its amount, charges, attempts).
    pub payment: PaymentDoc,
    /// Where it is now: succeeded, failed (declined), or waiting for the customer's action.
    pub status: PaymentStatus,
    /// For `requires_action`: what Stripe.js finishes it with (3-D Secure).
    pub client_secret: Option<String>,
    /// Why it was declined.
    pub reason: Option<String>,
}

/// Charges `user`'s order `order_id` with `method` (a PaymentMethod id). Not found for anyone
/// else's order; unavailable when the outcome is unknown (the claim is freed, and the next
/// attempt asks Stripe first).
pub async fn charge(
    app: &Inner,
    user: &ActingUser,
    order_id: OrderId,
    method: &str,
) -> Result<Charged, Error> {
    let order = app.orders.hold(&user.token, order_id).await?;
    if order.user_id != user.claims.sub {
        return Err(Error::NotFound("no such order".into()));
    }
    let payment = app.store.claim(&order).await?;
    match attempt(app, &payment, method).await {
        Ok((status, client_secret, reason)) => Ok(Charged {
            payment,
            status,
            client_secret,
            reason,
        }),
        Err(e) => {
            let _ = app.store.release(payment.id, Transition::AwaitAction).await;
            Err(Error::Unavailable(e.to_string()))
        }
    }
}

/// Records how Stripe says `order_id`'s PaymentIntent ended (its webhook): money received or a
/// decline, unless the confirmation recorded it already. Whether this recorded it.
pub async fn record(app: &Inner, order_id: OrderId, intent: &PaymentIntent) -> Result<bool, Error> {
    let intent_id = intent.id.as_str();
    Ok(match outcome(intent) {
        // The confirmation has usually recorded it already: one read rather than a
        // transaction that finds nothing to change and is aborted.
        Outcome::Succeeded
            if app
                .store
                .payment(order_id)
                .await?
                .is_some_and(|p| p.status.is_paid()) =>
        {
            false
        }
        Outcome::Succeeded => app.store.succeeded(order_id, intent_id).await?,
        Outcome::Failed { reason } => app.store.failed(order_id, intent_id, &reason).await?,
        Outcome::RequiresAction { .. } | Outcome::Processing => false,
    })
}

/// Talks to Stripe for one claimed attempt and records what came of it: the payment's status,
/// Stripe.js's client secret (3-D Secure) and a decline's reason.
async fn attempt(
    app: &Inner,
    payment: &PaymentDoc,
    method: &str,
) -> Result<(PaymentStatus, Option<String>, Option<String>), GatewayError> {
    let order_id = payment.id;
    let store_error = |e: StoreError| GatewayError::Unavailable(e.to_string());
    // The order's one intent: the one an earlier attempt recorded, whatever the provider's
    // idempotency keys still remember (the local stand-in remembers none: a new intent there
    // would be a second charge). A new one is recorded before it is confirmed, so no intent is
    // ever charged that the record does not name.
    let intent = match &payment.payment_intent_id {
        Some(recorded) => app.gateway.retrieve(recorded).await?,
        None => {
            let intent = app.gateway.intent(order_id, &payment.amount).await?;
            app.store
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
            app.gateway
                .confirm(&intent, method, payment.attempts)
                .await?
        }
    };
    Ok(match result {
        Outcome::Succeeded => {
            app.store
                .succeeded(order_id, &intent_id)
                .await
                .map_err(store_error)?;
            (PaymentStatus::Succeeded, None, None)
        }
        Outcome::RequiresAction { client_secret } => {
            app.store
                .release(order_id, Transition::AwaitAction)
                .await
                .map_err(store_error)?;
            (PaymentStatus::RequiresAction, Some(client_secret), None)
        }
        Outcome::Processing => {
            app.store
                .release(order_id, Transition::AwaitAction)
                .await
                .map_err(store_error)?;
            (PaymentStatus::RequiresAction, None, None)
        }
        Outcome::Failed { reason } => {
            app.store
                .failed(order_id, &intent_id, &reason)
                .await
                .map_err(store_error)?;
            (PaymentStatus::Failed, None, Some(reason))
        }
    })
}
