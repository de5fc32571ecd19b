//! The payments API under `/api/payments`: pay an order, read its payment, and Stripe's webhook.

mod pay;
mod webhook;

use axum::{
    Router,
    routing::{get, post},
};
use serde_json::{Value, json};
use storefront_kit::openapi::{Access, Api};

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/payments", post(pay::pay))
        .route("/api/payments/webhook", post(webhook::receive))
        .route("/api/payments/{order_id}", get(pay::show))
        // A static segment wins over `{order_id}`: this is never read as an order id.
        .merge(storefront_kit::openapi::route(
            "/api/payments/openapi.json",
            openapi,
        ))
        .with_state(state)
}

/// The payments' OpenAPI document: the operations above, in their order.
pub fn openapi() -> Value {
    let mut api = Api::new(
        "Storefront payments",
        "Paying an order through Stripe exactly once, once orders holds it for payment; its \
         payment and refund; Stripe's webhook (docs/api/payments.md).",
    );
    api.operation("POST", "/api/payments", "payOrder", "Pay an order", |op| {
        op.customer()
            .describe(
                "Pays one of the caller's orders with a PaymentMethod from Stripe.js. orders first \
                 holds the order for payment: that checks it is the caller's and payable, gives \
                 the amount (the order's total, never the client's) and keeps a cancel waiting \
                 while Stripe has the payment. An order whose stock is still being reserved is \
                 waited for (up to `PAYMENT_ORDER_WAIT_SECS`, 10 s). Retrying is safe: one \
                 order is charged at most once.",
            )
            .json::<pay::PayBody>()
            .ok::<pay::PaymentView>(200, "Paid (`status: succeeded`)")
            .ok::<pay::PaymentView>(
                202,
                "The card needs the customer (`status: requires_action`: hand `client_secret` to \
                 Stripe.js) or Stripe is still working on it; Stripe's webhook records the outcome",
            )
            .problem(
                401,
                "orders refused the caller's token when asked to hold the order (`unauthenticated`).",
            )
            .problem(
                402,
                "Stripe declined the payment (`card-declined`, with its reason); the order stays \
                 payable — try another card.",
            )
            .problem(404, "No such order, someone else's, or not a UUID (`not-found`).")
            .problem(
                408,
                "The server's time for one request (15 s) ran out, waiting for the order's stock \
                 or for Stripe; ask again — the next attempt asks Stripe how this one ended.",
            )
            .problem(
                409,
                "The order is paid already (`already-paid`), another request for it is with \
                 Stripe (`payment-in-progress`), or it cannot be paid: cancelled, expired, or \
                 still `pending` after the wait (`order-not-payable`).",
            )
            .problem(
                422,
                "`payment_method` is not a PaymentMethod id (`pm_…`, at most 255 characters).",
            )
            .problem(
                503,
                "orders or Stripe did not answer: nothing was charged, or the next attempt asks \
                 Stripe first; retrying is safe.",
            );
    })
    .operation(
        "POST",
        "/api/payments/webhook",
        "receiveStripeWebhook",
        "Stripe's webhook",
        |op| {
            op.access(Access::Public)
                .describe(
                    "For Stripe only. The raw body is verified with `Stripe-Signature` against \
                     `STRIPE_WEBHOOK_SECRET` (HMAC-SHA256, 300 s tolerance) before anything is \
                     read. `payment_intent.succeeded` and `payment_intent.payment_failed` record \
                     the outcome unless the confirmation already did; other events are ignored.",
                )
                .header(
                    "Stripe-Signature",
                    true,
                    "Stripe's signature of the raw body (`t=…,v1=…`)",
                )
                .body(
                    "application/json",
                    json!({
                        "type": "object",
                        "description": "A Stripe Event, exactly as Stripe sent it.",
                    }),
                )
                .empty(204, "Received (recorded, already recorded, or ignored)")
                .problem(
                    400,
                    "No `Stripe-Signature`, a body that is not UTF-8, or a signature that does \
                     not verify (`malformed-request`).",
                )
                .problem(413, "The body is larger than this endpoint takes.");
        },
    )
    .operation(
        "GET",
        "/api/payments/{order_id}",
        "showPayment",
        "The payment of an order",
        |op| {
            op.customer()
                .describe("The payment of the caller's order (an admin: anyone's).")
                .id("order_id", "The order")
                .ok::<pay::PaymentView>(200, "The payment")
                .problem(
                    400,
                    "The id is not valid percent-encoded UTF-8 (`malformed-request`).",
                )
                .problem(
                    404,
                    "No payment for this order, someone else's, or not a UUID (`not-found`).",
                );
        },
    );
    storefront_kit::deadletters::document(&mut api, crate::SERVICE);
    api.document()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_is_whole() {
        let document = super::openapi();
        storefront_kit::openapi::assert_whole(&document, 6);
    }
}
