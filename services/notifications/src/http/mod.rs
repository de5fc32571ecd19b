//! `/api/notifications` (the signed-in user's history) and `/ws/notifications` (live).

mod list;
mod socket;

use axum::{
    Router,
    routing::{get, post},
};

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/notifications", get(list::page))
        .route("/api/notifications/read-all", post(list::read_all))
        .route("/api/notifications/{id}/read", post(list::read))
        .route("/ws/notifications", get(socket::connect))
        .with_state(state)
}
