//! Stripe, through async-stripe: one PaymentIntent per order, confirmed with the payment method
//! the browser got from Stripe.js (card numbers never reach us), refunded when an order ended
//! unpaid on our side after all.
//!
//! Idempotency keys make every call safe to repeat: the intent is created with `order-{id}` (the
//! same intent however often we ask), each confirmation with `order-{id}-attempt-{n}`, each refund
//! attempt with `refund-{id}-{n}`. A refund also looks first for one an earlier attempt made
//! whose answer was lost, so a payment is never refunded twice, even past the 24 hours Stripe
//! keeps idempotency keys (or on a stand-in that keeps none).

use std::{collections::HashMap, str::FromStr, time::Duration};
use storefront_events::OrderId;

use storefront_events::Money;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::{
    payment_intent::{ConfirmPaymentIntent, CreatePaymentIntent, RetrievePaymentIntent},
    refund::{CreateRefund, ListRefund},
};
use stripe_shared::{PaymentIntent, PaymentIntentStatus};

/// What a confirmation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The card needs the customer (3-D Secure): Stripe.js confirms with this client secret.
    RequiresAction {
        client_secret: String,
    },
    /// Stripe is still working on it; the webhook will tell.
    Processing,
    /// Declined, with Stripe's reason.
    Failed {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Stripe did not answer, or answered something we cannot read. The outcome is unknown.
    #[error("payment provider: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct Gateway {
    client: Client,
}

fn key(value: String) -> Result<RequestStrategy, GatewayError> {
    IdempotencyKey::new(value)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| GatewayError::Unavailable(e.to_string()))
}

fn unavailable(e: StripeError) -> GatewayError {
    GatewayError::Unavailable(e.to_string())
}

/// Reads an intent's state as an outcome.
pub fn outcome(intent: &PaymentIntent) -> Outcome {
    match &intent.status {
        PaymentIntentStatus::Succeeded => Outcome::Succeeded,
        PaymentIntentStatus::RequiresAction | PaymentIntentStatus::RequiresConfirmation => {
            Outcome::RequiresAction {
                client_secret: intent.client_secret.clone().unwrap_or_default(),
            }
        }
        PaymentIntentStatus::Processing | PaymentIntentStatus::RequiresCapture => {
            Outcome::Processing
        }
        _ => Outcome::Failed {
            reason: intent
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| "the payment was not completed".into()),
        },
    }
}

impl Gateway {
    /// `api_base` overrides Stripe's address (the local stand-in, tests).
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<Self, GatewayError> {
        let mut builder = ClientBuilder::new(secret_key).timeout(Duration::from_secs(20));
        if let Some(base) = api_base {
            builder = builder.url(base);
        }
        Ok(Gateway {
            client: builder.build().map_err(unavailable)?,
        })
    }

    /// The order's intent: created on first use, the same one after (Stripe's idempotency).
    pub async fn intent(
        &self,
        order_id: OrderId,
        amount: &Money,
    ) -> Result<PaymentIntent, GatewayError> {
        let currency = stripe_types::Currency::from_str(&amount.currency.to_ascii_lowercase())
            .unwrap_or_default();
        let metadata = HashMap::from([("order_id".to_owned(), order_id.to_string())]);
        CreatePaymentIntent::new(amount.amount, currency)
            .metadata(metadata)
            .customize()
            .request_strategy(key(format!("order-{order_id}"))?)
            .send(&self.client)
            .await
            .map_err(unavailable)
    }

    /// Confirms the intent with a payment method from Stripe.js. A decline is an outcome, not an
    /// error.
    pub async fn confirm(
        &self,
        intent: &PaymentIntent,
        payment_method: &str,
        attempt: u32,
    ) -> Result<Outcome, GatewayError> {
        let order = intent.metadata.get("order_id").cloned().unwrap_or_default();
        let confirmed = ConfirmPaymentIntent::new(intent.id.clone())
            .payment_method(payment_method)
            .customize()
            .request_strategy(key(format!("order-{order}-attempt-{attempt}"))?)
            .send(&self.client)
            .await;
        match confirmed {
            Ok(intent) => Ok(outcome(&intent)),
            Err(StripeError::Stripe(error, status)) if (400..500).contains(&status) => {
                Ok(Outcome::Failed {
                    reason: error
                        .message
                        .clone()
                        .unwrap_or_else(|| "the card was declined".into()),
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    pub async fn retrieve(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        RetrievePaymentIntent::new(intent_id.to_owned())
            .send(&self.client)
            .await
            .map_err(unavailable)
    }

    /// Gives a payment's money back in full, once: the refund an earlier attempt made is the
    /// refund. `attempt` numbers the tries (a failed refund is tried again under a new key).
    pub async fn refund(
        &self,
        order_id: OrderId,
        intent_id: &str,
        attempt: u32,
    ) -> Result<Refunded, GatewayError> {
        let earlier = ListRefund::new()
            .payment_intent(intent_id)
            .send(&self.client)
            .await
            .map_err(unavailable)?;
        if let Some(done) = earlier
            .data
            .iter()
            .filter_map(refunded)
            .max_by_key(|r| matches!(r, Refunded::Succeeded { .. }))
        {
            return Ok(done);
        }
        let metadata = HashMap::from([("order_id".to_owned(), order_id.to_string())]);
        let refund = CreateRefund::new()
            .payment_intent(intent_id)
            .metadata(metadata)
            .customize()
            .request_strategy(key(format!("refund-{order_id}-{attempt}"))?)
            .send(&self.client)
            .await
            .map_err(unavailable)?;
        refunded(&refund).ok_or_else(|| {
            GatewayError::Unavailable(format!(
                "refund {} is {}",
                refund.id.as_str(),
                refund.status.as_deref().unwrap_or("of unknown status")
            ))
        })
    }
}

/// A refund Stripe has accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refunded {
    /// Done: the money is on its way back.
    Succeeded { refund_id: String },
    /// Stripe has it but has not finished (some cards): ask again later, never refund anew.
    Pending { refund_id: String },
}

/// What a refund of Stripe's amounts to: succeeded or pending count, failed or canceled do not.
fn refunded(refund: &stripe_shared::Refund) -> Option<Refunded> {
    let refund_id = refund.id.as_str().to_owned();
    match refund.status.as_deref() {
        Some("succeeded") => Some(Refunded::Succeeded { refund_id }),
        Some("pending") | Some("requires_action") => Some(Refunded::Pending { refund_id }),
        _ => None,
    }
}
