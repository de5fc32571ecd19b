//! The cart API under `/api/cart`: the signed-in customer's cart, and checkout into an order.

mod cart;

use axum::{
    Router,
    routing::{get, patch, post},
};
use serde_json::Value;
use storefront_kit::openapi::Api;

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/cart", get(cart::show))
        .route("/api/cart/items", post(cart::add))
        .route(
            "/api/cart/items/{product_id}",
            patch(cart::set_quantity).delete(cart::remove),
        )
        .route("/api/cart/checkout", post(cart::checkout))
        .merge(storefront_kit::openapi::route(
            "/api/cart/openapi.json",
            openapi,
        ))
        .with_state(state)
}

/// The cart's OpenAPI document: the operations above, in their order.
pub fn openapi() -> Value {
    let mut api = Api::new(
        "Storefront cart",
        "The signed-in customer's cart, and checkout into an order (docs/api/cart.md).",
    );
    api.operation("GET", "/api/cart", "showCart", "The cart", |op| {
        op.customer()
            .ok::<cart::CartView>(200, "The cart, priced from the catalog now");
    })
    .operation("POST", "/api/cart/items", "addToCart", "Add a product", |op| {
        op.customer()
            .describe("Adds `quantity` of a product (to what the cart has of it already).")
            .json::<cart::AddBody>()
            .ok::<cart::CartView>(200, "The cart after the change");
    })
    .operation(
        "PATCH",
        "/api/cart/items/{product_id}",
        "setCartQuantity",
        "Change a line's quantity",
        |op| {
            op.customer()
                .path("product_id", "The product of the line")
                .json::<cart::QuantityBody>()
                .ok::<cart::CartView>(200, "The cart after the change")
                .problem(404, "The product is not in the cart.");
        },
    )
    .operation(
        "DELETE",
        "/api/cart/items/{product_id}",
        "removeFromCart",
        "Remove a line",
        |op| {
            op.customer()
                .path("product_id", "The product of the line")
                .empty(204, "Removed")
                .problem(404, "The product is not in the cart.");
        },
    )
    .operation(
        "POST",
        "/api/cart/checkout",
        "checkOut",
        "Check the cart out into an order",
        |op| {
            op.customer()
                .describe(
                    "The cart's lines are held, then placed as an order by orders, whose answer \
                     comes back as it is. The same `Idempotency-Key` again is the same checkout.",
                )
                .header(
                    "Idempotency-Key",
                    true,
                    "1 to 100 visible ASCII characters: a new one per checkout, the same one when retrying",
                )
                .answer(
                    201,
                    "The order placed (as `GET /api/orders/{id}` shows it)",
                    Some(("application/json", serde_json::json!({ "type": "object" }))),
                )
                .answer(
                    200,
                    "The order this key placed before",
                    Some(("application/json", serde_json::json!({ "type": "object" }))),
                )
                .problem(400, "No `Idempotency-Key`, or not a valid one.")
                .problem(409, "This key is in use by a checkout still being placed.")
                .problem(
                    422,
                    "The cart is empty (`items`), or a line cannot be ordered as it is (`items[i]`, `items[i].quantity`); its lines are back in the cart.",
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
        storefront_kit::openapi::assert_whole(&document, 8);
    }
}
