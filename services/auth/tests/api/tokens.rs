use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let app = spawn_app().await;
    let first = app.signup(&email()).await;
    let response = app
        .post("/refresh", json!({ "refresh_token": first.refresh }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = Session::from(response.json::<serde_json::Value>().await.unwrap());
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(
        app.get_as(&second.access, "/currentuser").await.status(),
        StatusCode::OK
    );
    let third = app
        .post("/refresh", json!({ "refresh_token": second.refresh }))
        .await;
    assert_eq!(third.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_reads_the_cookie_too() {
    let app = spawn_app().await;
    let session = app.signup(&email()).await;
    // From another origin (or none): the cookie does not count.
    let foreign = app
        .http
        .post(app.url("/refresh"))
        .header("cookie", format!("sf_refresh={}", session.refresh))
        .header("origin", "http://evil.localhost:9000")
        .send()
        .await
        .unwrap();
    problem(foreign, StatusCode::FORBIDDEN, "cross-origin").await;
    let host = app
        .url("")
        .split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let response = app
        .http
        .post(app.url("/refresh"))
        .header("cookie", format!("sf_refresh={}", session.refresh))
        .header("origin", format!("http://{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let none = app.http.post(app.url("/refresh")).send().await.unwrap();
    problem(none, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_ends_the_whole_session() {
    let app = spawn_app().await;
    let first = app.signup(&email()).await;
    let rotated = Session::from(
        app.post("/refresh", json!({ "refresh_token": first.refresh }))
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap(),
    );
    // An attacker replays the old token.
    problem(
        app.post("/refresh", json!({ "refresh_token": first.refresh }))
            .await,
        StatusCode::UNAUTHORIZED,
        "refresh-token-reused",
    )
    .await;
    // The legitimate holder's newer tokens are dead too.
    problem(
        app.post("/refresh", json!({ "refresh_token": rotated.refresh }))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid-refresh-token",
    )
    .await;
    problem(
        app.get_as(&rotated.access, "/currentuser").await,
        StatusCode::UNAUTHORIZED,
        "token-revoked",
    )
    .await;
}

#[tokio::test]
async fn unknown_refresh_tokens_and_bad_bodies_are_refused() {
    let app = spawn_app().await;
    problem(
        app.post("/refresh", json!({ "refresh_token": "made-up" }))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid-refresh-token",
    )
    .await;
    problem(
        app.post("/refresh", json!({ "token": "x" })).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
}

#[tokio::test]
async fn expired_tokens_are_refused_as_expired() {
    let app = spawn_app().await;
    let token = app.mint(|c| {
        c.iat -= 3600;
        c.exp -= 1800;
    });
    problem(
        app.get_as(&token, "/currentuser").await,
        StatusCode::UNAUTHORIZED,
        "token-expired",
    )
    .await;
}

#[tokio::test]
async fn tampered_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let session = app.signup(&email()).await;
    // Flip the role in the payload without re-signing.
    let mut parts: Vec<String> = session.access.split('.').map(String::from).collect();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(engine.decode(&parts[1]).unwrap())
        .unwrap()
        .replace("\"customer\"", "\"admin\"");
    parts[1] = engine.encode(payload);
    let tampered = parts.join(".");
    problem(
        app.get_as(&tampered, "/currentuser").await,
        StatusCode::UNAUTHORIZED,
        "invalid-token",
    )
    .await;
    problem(
        app.get_as("not.a.jwt", "/currentuser").await,
        StatusCode::UNAUTHORIZED,
        "invalid-token",
    )
    .await;
    // Signed by another key (another shop's auth).
    let other = spawn_app().await;
    let foreign = other.mint(|_| {});
    problem(
        app.get_as(&foreign, "/currentuser").await,
        StatusCode::UNAUTHORIZED,
        "invalid-token",
    )
    .await;
    // Wrong issuer, right key.
    let wrong_issuer = app.mint(|c| c.iss = "someone-else".into());
    problem(
        app.get_as(&wrong_issuer, "/currentuser").await,
        StatusCode::UNAUTHORIZED,
        "invalid-token",
    )
    .await;
}
