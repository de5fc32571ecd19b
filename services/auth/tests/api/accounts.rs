use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn signup_returns_a_session_with_hardened_cookies() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/signup",
            json!({ "email": email(), "password": PASSWORD, "name": "Ada" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("sf_access=") && c.contains("Path=/;"))
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("sf_refresh=") && c.contains("Path=/api/users"))
    );
    for cookie in &cookies {
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("Secure")
                && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
    }
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["role"], "customer");
    assert!(body["user"].get("password_hash").is_none());
}

#[tokio::test]
async fn the_same_email_in_another_case_is_taken() {
    let app = spawn_app().await;
    let address = email();
    app.signup(&address).await;
    let response = app
        .post(
            "/signup",
            json!({ "email": address.to_uppercase(), "password": PASSWORD, "name": "Eve" }),
        )
        .await;
    problem(response, StatusCode::CONFLICT, "email-taken").await;
}

#[tokio::test]
async fn invalid_signup_fields_are_each_named() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/signup",
            json!({ "email": "not-an-email", "password": "short", "name": " " }),
        )
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);
    assert!(
        body["errors"][1]["message"]
            .as_str()
            .unwrap()
            .contains("at least 10")
    );
}

#[tokio::test]
async fn malformed_bodies_are_problems_not_crashes() {
    let app = spawn_app().await;
    let send = |body: &'static str, content_type: &'static str| {
        app.http
            .post(app.url("/signup"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    problem(
        send("{\"email\":", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    problem(
        send(
            r#"{"email":"a@b.co","password":"x","name":"A","admin":true}"#,
            "application/json",
        )
        .await
        .unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    problem(
        send(r#"{"email":"a@b.co"}"#, "text/plain").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
    let huge = format!(
        r#"{{"email":"a@b.co","password":"{}","name":"A"}}"#,
        "x".repeat(100 * 1024)
    );
    let response = app
        .http
        .post(app.url("/signup"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = spawn_app().await;
    let address = email();
    app.signup(&address).await;
    let wrong = problem(
        app.signin(&address, "wrong password 1").await,
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
    )
    .await;
    let unknown = problem(
        app.signin(&email(), PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
    )
    .await;
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_eq!(
        app.signin(&address.to_uppercase(), PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn repeated_wrong_passwords_for_one_email_are_rate_limited() {
    let app = spawn_app().await;
    let address = email();
    app.signup(&address).await;
    for _ in 0..5 {
        assert_eq!(
            app.signin(&address, "wrong password 1").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let response = app.signin(&address, PASSWORD).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after));
    problem(response, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    // Another account is not affected.
    let other = email();
    app.signup(&other).await;
    assert_eq!(app.signin(&other, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn too_many_attempts_from_one_address_are_rate_limited() {
    let stack = storefront_kit::testing::TestStack::from_env();
    let mut config = config(&stack);
    config.rate_limits.attempts_per_ip = 3;
    let app = spawn_with(config, false).await;
    for _ in 0..3 {
        assert_eq!(
            app.signin(&email(), PASSWORD).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    problem(
        app.signin(&email(), PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
    )
    .await;
}

#[tokio::test]
async fn currentuser_reads_bearer_or_cookie_and_needs_one() {
    let app = spawn_app().await;
    let address = email();
    let session = app.signup(&address).await;
    let body: serde_json::Value = app
        .get_as(&session.access, "/currentuser")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["user"]["email"], address);
    let by_cookie = app
        .http
        .get(app.url("/currentuser"))
        .header("cookie", format!("sf_access={}", session.access))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);
    let anonymous = app.http.get(app.url("/currentuser")).send().await.unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[tokio::test]
async fn signout_revokes_the_access_token_and_the_session() {
    let app = spawn_app().await;
    let session = app.signup(&email()).await;
    let response = app.post_as(&session.access, "/signout", None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| c.to_str().unwrap().contains("Max-Age=0"))
    );
    problem(
        app.get_as(&session.access, "/currentuser").await,
        StatusCode::UNAUTHORIZED,
        "token-revoked",
    )
    .await;
    let refresh = app
        .post("/refresh", json!({ "refresh_token": session.refresh }))
        .await;
    problem(refresh, StatusCode::UNAUTHORIZED, "invalid-refresh-token").await;
}

#[tokio::test]
async fn the_bootstrap_admin_exists_once() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let me: serde_json::Value = app
        .get_as(&admin.access, "/currentuser")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["role"], "admin");
    // Starting again with the same database keeps the one admin.
    let again = storefront_auth::build(&app.config).await.unwrap();
    let page = again
        .state
        .store
        .list_users(1, 100, &Default::default())
        .await
        .unwrap();
    assert_eq!(page.total, 1);
}
