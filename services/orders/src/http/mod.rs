//! The orders API under `/api/orders`: customers place, list, read and cancel their own orders;
//! admins list every order. Another customer's order is a 404, never a 403, so ids cannot be probed.
//! `/internal/*` is for the other services (payments' hold) and is not routed by the Ingress.

mod orders;

use axum::{
    Router,
    routing::{get, post},
};

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/orders", get(orders::mine).post(orders::place))
        .route("/api/orders/admin/all", get(orders::all))
        .route("/api/orders/quote", post(orders::quote))
        .route("/api/orders/{id}", get(orders::show))
        .route("/api/orders/{id}/cancel", post(orders::cancel))
        .route(
            "/internal/orders/{id}/payment-hold",
            post(orders::hold_for_payment),
        )
        .with_state(state)
}
