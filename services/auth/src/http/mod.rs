//! auth's HTTP API under `/api/users`. Each handler is a few lines: parse into domain types, call
//! the store, map to a response; errors are `storefront_kit::Error` and render as problem+json.

mod account;
mod admin;
mod cookies;
mod profile;
mod views;

use axum::{
    Router,
    routing::{get, post},
};

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/users/signup", post(account::signup))
        .route("/api/users/signin", post(account::signin))
        .route("/api/users/signout", post(account::signout))
        .route("/api/users/refresh", post(account::refresh))
        .route("/api/users/currentuser", get(account::current_user))
        .route(
            "/api/users/profile",
            get(profile::show).patch(profile::update),
        )
        .route("/api/users/admin/users", get(admin::list))
        .route("/api/users/admin/users/{id}/block", post(admin::block))
        .route("/api/users/admin/users/{id}/unblock", post(admin::unblock))
        .route("/api/users/.well-known/jwks.json", get(account::jwks))
        .with_state(state)
}
