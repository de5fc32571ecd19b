//! The error contract: every error is RFC 9457 problem+json with a stable type.

use axum::{http::StatusCode, response::IntoResponse};
use storefront_kit::{Error, FieldError};

async fn render(error: Error) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let response = error.into_response();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn validation_errors_list_the_offending_fields() {
    let (status, headers, body) = render(Error::Validation(vec![FieldError::new(
        "email", "required",
    )]))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["type"], "https://storefront.dev/problems/validation");
    assert_eq!(body["errors"][0]["field"], "email");
    assert_eq!(body["status"], 422);
}

#[tokio::test]
async fn internal_errors_leak_nothing() {
    let (status, _, body) = render(Error::internal("password=hunter2 at db.rs:12")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.to_string().contains("hunter2"));
}

#[tokio::test]
async fn rate_limits_say_when_to_retry() {
    let (status, headers, _) = render(Error::RateLimited {
        retry_after: std::time::Duration::from_secs(42),
    })
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "42");
}
