use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

impl TestApp {
    async fn patch_profile(&self, token: &str, body: Value) -> reqwest::Response {
        self.http
            .patch(self.url("/profile"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_user_edits_their_profile() {
    let app = spawn_app().await;
    let session = app.signup(&email()).await;
    let address =
        json!({ "line1": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "de" });
    let response = app
        .patch_profile(
            &session.access,
            json!({ "name": "Ada L.", "phone": "+49 30 1234567", "address": address }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let shown: Value = app
        .get_as(&session.access, "/profile")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["name"], "Ada L.");
    assert_eq!(shown["phone"], "+49301234567");
    assert_eq!(shown["address"]["country"], "DE");

    let cleared: Value = app
        .patch_profile(&session.access, json!({ "phone": null }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["phone"], Value::Null);
    assert_eq!(cleared["name"], "Ada L.");
}

#[tokio::test]
async fn invalid_profile_changes_name_their_fields() {
    let app = spawn_app().await;
    let session = app.signup(&email()).await;
    let body = json!({ "name": "", "phone": "call me", "address": { "line1": "x", "city": "", "postal_code": "1", "country": "Germany" } });
    let problem_body = problem(
        app.patch_profile(&session.access, body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    let fields: Vec<&str> = problem_body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "phone", "address.city", "address.country"]);
    problem(
        app.patch_profile(&session.access, json!({})).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    problem(
        app.patch_profile(&session.access, json!({ "role": "admin" }))
            .await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    let anonymous = app.http.get(app.url("/profile")).send().await.unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}
