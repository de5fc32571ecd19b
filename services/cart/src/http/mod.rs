//! The cart API under `/api/cart`: the signed-in customer's cart, and checkout into an order.

mod cart;

use axum::{
    Router,
    routing::{get, patch, post},
};

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
        .with_state(state)
}
