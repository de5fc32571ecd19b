//! The products API under `/api/products`. Reads are public; writes are for admins and name the
//! version they change (`If-Match`). Errors are `storefront_kit::Error`, rendered as problem+json.

mod images;
mod products;
mod stock;
mod views;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    // A multipart upload carries the image plus a little framing; the route reads at least what
    // the gateway lets through, so a larger image is this service's 413, not a closed connection.
    let upload_limit =
        (state.rules.max_bytes + 64 * 1024).max(storefront_kit::config::MAX_UPLOAD_BYTES);
    Router::new()
        .route("/api/products", get(products::list).post(products::create))
        .route("/api/products/categories", get(products::categories))
        .route(
            "/api/products/{id}",
            get(products::show)
                .put(products::replace)
                .patch(products::update)
                .delete(products::delete),
        )
        .route(
            "/api/products/{id}/stock",
            get(stock::show).post(stock::change),
        )
        .route(
            "/api/products/{id}/images",
            post(images::upload)
                .layer(DefaultBodyLimit::max(upload_limit))
                .layer(axum::middleware::from_fn_with_state(
                    upload_limit,
                    storefront_kit::server::read_body_first,
                )),
        )
        .route(
            "/api/products/{id}/images/{key}",
            get(images::serve).delete(images::delete),
        )
        .route(
            "/api/products/{id}/images/{key}/primary",
            post(images::make_primary),
        )
        .with_state(state)
}
