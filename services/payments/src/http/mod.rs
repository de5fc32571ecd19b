//! The payments API under `/api/payments`: pay an order, read its payment, and Stripe's webhook.

mod pay;
mod webhook;

use axum::{
    Router,
    routing::{get, post},
};

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/payments", post(pay::pay))
        .route("/api/payments/webhook", post(webhook::receive))
        .route("/api/payments/{order_id}", get(pay::show))
        .with_state(state)
}
