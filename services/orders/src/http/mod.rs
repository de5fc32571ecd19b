//! The orders API under `/api/orders`: customers place, list, read and cancel their own orders;
//! admins list every order. Another customer's order is a 404, never a 403, so ids cannot be probed.
//! `/internal/*` is for the other services (payments' hold) and is not routed by the Ingress.

mod orders;
mod stats;

use axum::{
    Router,
    routing::{get, post},
};
use serde_json::Value;
use storefront_kit::openapi::Api;

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/orders", get(orders::mine).post(orders::place))
        .route("/api/orders/admin/all", get(orders::all))
        .route("/api/orders/admin/stats", get(stats::show))
        .route("/api/orders/quote", post(orders::quote))
        .route("/api/orders/{id}", get(orders::show))
        .route("/api/orders/{id}/cancel", post(orders::cancel))
        .route(
            "/internal/orders/{id}/payment-hold",
            post(orders::hold_for_payment),
        )
        .merge(storefront_kit::openapi::route(
            "/api/orders/openapi.json",
            openapi,
        ))
        .with_state(state)
}

/// The orders' OpenAPI document: the operations above the gateway routes (not `/internal/*`),
/// in their order.
pub fn openapi() -> Value {
    let mut api = Api::new(
        "Storefront orders",
        "Customers' orders and their state machine (`pending → awaiting_payment → completed`, \
         or `cancelled`), priced through the shop's pricing function (docs/api/orders.md).",
    );
    let bad_query = "An unknown query parameter, a repeated one, or one that is not valid \
                     percent-encoded UTF-8 (`malformed-request`).";
    let bad_id = "The id is not valid percent-encoded UTF-8 (`malformed-request`).";
    let not_found = "No such order, someone else's, or not a UUID (`not-found`).";
    let lines_refused = "Invalid lines, each named in `errors` (`validation`): no lines or more \
                         than 50, a quantity outside 1–100 (per product, after merging), a \
                         malformed product id, a product not sold here (`lines`), products in \
                         several currencies (`lines`), or a total above what one payment can \
                         take (`total`: at most 999,999.99).";
    api.operation("GET", "/api/orders", "listMyOrders", "My orders", |op| {
        op.customer()
            .query::<orders::ListQuery>()
            .ok::<orders::OrderList>(200, "A page of the caller's orders, newest first")
            .problem(400, bad_query)
            .problem(
                422,
                "`page` or `per_page` is not a whole number in range, or `status` is not a state \
                 (`validation`).",
            );
    })
    .operation("POST", "/api/orders", "placeOrder", "Place an order", |op| {
        op.customer()
            .describe(
                "Priced from orders' own product replica (never from the client) and through the \
                 shop's pricing function (shipping, fees, tax; the built-in rules when it does \
                 not answer usefully). The order starts `pending` until its stock is held. With \
                 an `Idempotency-Key`, the same key again answers the order it placed (201 \
                 again); the same key with other lines is 409. The answer's `Location` names \
                 the order. Normally called by the cart's checkout.",
            )
            .header(
                "Idempotency-Key",
                false,
                "1 to 100 visible ASCII characters: a new one per order, the same one when retrying",
            )
            .json::<orders::PlaceBody>()
            .ok::<orders::OrderView>(201, "The order placed (or the one this key placed before)")
            .problem(400, "The `Idempotency-Key` is not 1 to 100 visible ASCII characters.")
            .problem(
                409,
                "This `Idempotency-Key` placed an order with other lines (`idempotency-key-reused`).",
            )
            .problem(422, lines_refused);
    })
    .operation(
        "GET",
        "/api/orders/admin/all",
        "listAllOrders",
        "Every order (admin)",
        |op| {
            op.admin()
                .query::<orders::ListQuery>()
                .ok::<orders::OrderList>(200, "A page of every customer's orders, newest first")
                .problem(400, bad_query)
                .problem(
                    422,
                    "`page` or `per_page` is not a whole number in range, or `status` is not a \
                     state (`validation`).",
                );
        },
    )
    .operation(
        "GET",
        "/api/orders/admin/stats",
        "orderStats",
        "Sales per day (admin)",
        |op| {
            op.admin()
                .describe(
                    "Orders placed, completed and cancelled per day (UTC) over the last `days` \
                     days, revenue per day and currency, and every product sold in them. An order \
                     counts on the day it was placed; its total is revenue once it is completed.",
                )
                .query::<storefront_kit::validate::DaysQuery>()
                .ok::<crate::stats::Sales>(200, "The sales")
                .problem(400, "A parameter other than `days` (`malformed-request`).")
                .problem(422, "`days` is not a whole number from 1 to 90 (`validation`).");
        },
    )
    .operation(
        "POST",
        "/api/orders/quote",
        "quoteOrder",
        "Price lines as an order, placing nothing",
        |op| {
            op.customer()
                .describe(
                    "The same body and the same pricing as `POST /api/orders`; nothing is placed \
                     (the cart shows it as its estimate).",
                )
                .json::<orders::PlaceBody>()
                .ok::<orders::QuoteView>(200, "What the lines would cost as an order now")
                .problem(422, lines_refused);
        },
    )
    .operation("GET", "/api/orders/{id}", "showOrder", "An order", |op| {
        op.customer()
            .describe(
                "The caller's order, or any for an admin. The `ETag` is the order's version \
                 (`\"3\"`), which every visible change raises. With `If-None-Match` naming the \
                 current version the answer is 304; with `?wait=S` as well, orders first waits up \
                 to `S` seconds for the order to change (then 200 with the order and its new \
                 tag), so a client follows an order with one request per change.",
            )
            .id("id", "The order")
            .query::<orders::WaitQuery>()
            .header(
                "If-None-Match",
                false,
                "The `ETag` of the order as the client has it (`\"3\"` or `W/\"3\"`)",
            )
            .ok::<orders::OrderView>(200, "The order, with its `ETag`")
            .empty(
                304,
                "The order is still at the version `If-None-Match` names (after `wait` seconds \
                 when given)",
            )
            .problem(
                400,
                "An unknown query parameter, `wait` not a whole number, or the id not valid \
                 percent-encoded UTF-8 (`malformed-request`).",
            )
            .problem(404, not_found)
            .problem(422, "`wait` is not between 1 and 10 (`validation`).");
    })
    .operation(
        "POST",
        "/api/orders/{id}/cancel",
        "cancelOrder",
        "Cancel an order",
        |op| {
            op.customer()
                .describe(
                    "The owner's (or, by an admin, anyone's) order, only before payment; its \
                     stock is released and the cart puts its lines back. No body.",
                )
                .id("id", "The order")
                .ok::<orders::OrderView>(200, "The order, cancelled")
                .problem(400, bad_id)
                .problem(404, not_found)
                .problem(
                    409,
                    "The order is completed or cancelled already (`order-state`), or a payment \
                     of it is with Stripe right now (`payment-in-progress`; `paying_until` says \
                     until when).",
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
        storefront_kit::openapi::assert_whole(&document, 10);
    }
}
