//! Another service verifying auth's tokens through the kit: JWKS, not a shared secret.

use std::sync::Arc;

use axum::{Router, extract::FromRef, routing::get};
use reqwest::StatusCode;
use serde_json::Value;
use storefront_kit::{
    auth::{Authenticator, CurrentUser, RequireAdmin, Revocations},
    config::HttpConfig,
    server::{self, Readiness},
    testing::spawn,
};

use crate::helpers::*;

#[derive(Clone)]
struct Orders {
    auth: Arc<Authenticator>,
}

impl FromRef<Orders> for Arc<Authenticator> {
    fn from_ref(state: &Orders) -> Self {
        state.auth.clone()
    }
}

async fn whoami(CurrentUser(claims): CurrentUser) -> String {
    claims.email
}

async fn admin_only(RequireAdmin(_): RequireAdmin) -> &'static str {
    "ok"
}

/// A stand-in second service on the kit, trusting `jwks_url`.
async fn other_service(app: &TestApp, jwks_url: String) -> String {
    let revocations = Revocations::connect(&app.stack.redis_url, &app.config.kafka.topic_prefix)
        .await
        .unwrap();
    let state = Orders {
        auth: Arc::new(Authenticator::from_jwks(&jwks_url, revocations)),
    };
    let routes = Router::new()
        .route("/whoami", get(whoami))
        .route("/admin", get(admin_only))
        .with_state(state);
    let addr = spawn(server::build(
        "orders",
        routes,
        Readiness::new(),
        &HttpConfig::default(),
    ))
    .await;
    format!("http://{addr}")
}

async fn get_with(app: &TestApp, url: &str, token: &str) -> reqwest::Response {
    app.http.get(url).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn jwks_publishes_the_ed25519_public_key() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let jwks: Value = response.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(
        key.get("d").is_none(),
        "the private part must never be published"
    );
}

#[tokio::test]
async fn another_service_trusts_auth_tokens_until_signout() {
    let app = spawn_app().await;
    let orders = other_service(&app, app.url("/.well-known/jwks.json")).await;
    let address = email();
    let session = app.signup(&address).await;

    let me = get_with(&app, &format!("{orders}/whoami"), &session.access).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.text().await.unwrap(), address);
    let admin_route = get_with(&app, &format!("{orders}/admin"), &session.access).await;
    problem(admin_route, StatusCode::FORBIDDEN, "admin-only").await;
    let admin = app.admin().await;
    let admin_route = get_with(&app, &format!("{orders}/admin"), &admin.access).await;
    assert_eq!(admin_route.status(), StatusCode::OK);

    app.post_as(&session.access, "/signout", None).await;
    let after = get_with(&app, &format!("{orders}/whoami"), &session.access).await;
    problem(after, StatusCode::UNAUTHORIZED, "token-revoked").await;

    let foreign = spawn_app().await.mint(|_| {});
    let response = get_with(&app, &format!("{orders}/whoami"), &foreign).await;
    problem(response, StatusCode::UNAUTHORIZED, "invalid-token").await;
}

#[tokio::test]
async fn an_unreachable_jwks_fails_closed() {
    let app = spawn_app().await;
    let orders = other_service(&app, "http://127.0.0.1:9/jwks.json".into()).await;
    let session = app.signup(&email()).await;
    let response = get_with(&app, &format!("{orders}/whoami"), &session.access).await;
    problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let base = format!("http://{}", app.addr);
    assert_eq!(
        app.http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let ready: Value = app
        .http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["mongodb"], "ok");
    app.signin(&email(), PASSWORD).await;
    let metrics = app
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"http_requests_total{method="POST",route="/api/users/signin",status="401",service="auth"} 1"#), "{metrics}");
    let response = app
        .http
        .get(format!("{base}/api/users/nope"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    problem(response, StatusCode::NOT_FOUND, "not-found").await;
}
