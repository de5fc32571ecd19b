use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn customers_cannot_use_admin_routes() {
    let app = spawn_app().await;
    let customer = app.signup(&email()).await;
    problem(
        app.get_as(&customer.access, "/admin/users").await,
        StatusCode::FORBIDDEN,
        "admin-only",
    )
    .await;
    let path = format!("/admin/users/{}/block", customer.user_id);
    problem(
        app.post_as(&customer.access, &path, None).await,
        StatusCode::FORBIDDEN,
        "admin-only",
    )
    .await;
    let anonymous = app.http.get(app.url("/admin/users")).send().await.unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[tokio::test]
async fn admins_list_users_page_by_page() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for _ in 0..3 {
        app.signup(&email()).await;
    }
    let page: Value = app
        .get_as(&admin.access, "/admin/users?page=2&per_page=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["page"], 2);
    let first: Value = app
        .get_as(&admin.access, "/admin/users?per_page=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"][0]["email"], ADMIN_EMAIL);
    problem(
        app.get_as(&admin.access, "/admin/users?per_page=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    problem(
        app.get_as(&admin.access, "/admin/users?per_page=101").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    problem(
        app.get_as(&admin.access, "/admin/users?page=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    // Any page that is not a whole number in range is refused by its field, as the docs say
    // (a probe found `per_page=-1` a 400 and `page=1e9` a 200).
    for query in ["page=x", "page=1e9", "page=1000000000", "per_page=-1"] {
        problem(
            app.get_as(&admin.access, &format!("/admin/users?{query}"))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await;
    }
    problem(
        app.get_as(&admin.access, "/admin/users?sort=email").await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
}

#[tokio::test]
async fn a_blocked_user_is_locked_out_at_once() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let address = email();
    let user = app.signup(&address).await;
    let response = app
        .post_as(
            &admin.access,
            &format!("/admin/users/{}/block", user.user_id),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["blocked"], true);

    problem(
        app.get_as(&user.access, "/currentuser").await,
        StatusCode::UNAUTHORIZED,
        "token-revoked",
    )
    .await;
    problem(
        app.signin(&address, PASSWORD).await,
        StatusCode::FORBIDDEN,
        "account-blocked",
    )
    .await;
    let refresh = app
        .post(
            "/refresh",
            serde_json::json!({ "refresh_token": user.refresh }),
        )
        .await;
    problem(refresh, StatusCode::UNAUTHORIZED, "invalid-refresh-token").await;

    let blocked: Value = app
        .get_as(&admin.access, "/admin/users?blocked=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(blocked["total"], 1);

    let response = app
        .post_as(
            &admin.access,
            &format!("/admin/users/{}/unblock", user.user_id),
            None,
        )
        .await;
    assert_eq!(response.json::<Value>().await.unwrap()["blocked"], false);
    assert_eq!(
        app.signin(&address, PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn blocking_unknown_users_or_yourself_is_refused() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let unknown = format!("/admin/users/{}/block", uuid::Uuid::new_v4());
    problem(
        app.post_as(&admin.access, &unknown, None).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    problem(
        app.post_as(&admin.access, "/admin/users/not-a-uuid/block", None)
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let me = format!("/admin/users/{}/block", admin.user_id);
    problem(
        app.post_as(&admin.access, &me, None).await,
        StatusCode::CONFLICT,
        "cannot-block-self",
    )
    .await;
}

/// The admin's user list had no search, and its order list showed customers as ids: users are
/// found by text in their email or name, and a page of them by their ids.
#[tokio::test]
async fn admins_find_users_by_text_or_by_id() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let sam = app.signup(&email().replace("user", "Sam.Smith")).await;
    let other = app.signup(&email()).await;
    app.signup(&email()).await;
    let list = |query: String| {
        let app = &app;
        let token = admin.access.clone();
        async move {
            let response = app.get_as(&token, &format!("/admin/users?{query}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            let page: Value = response.json().await.unwrap();
            let ids: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(page["total"], ids.len(), "{query}");
            ids
        }
    };
    let sam_id = sam.user_id.to_string();
    let other_id = other.user_id.to_string();
    // Case-insensitive, literal: the dot is a dot, not "any character".
    assert_eq!(list("q=sam.smith".into()).await, vec![sam_id.clone()]);
    assert_eq!(list("q=SAM%2ESMITH".into()).await, vec![sam_id.clone()]);
    assert!(list("q=sam%2Esmit.".into()).await.is_empty());
    assert!(list("q=.*".into()).await.is_empty());
    // The name too (every test user is "Ada"; the admin is not).
    assert_eq!(list("q=ada&per_page=100".into()).await.len(), 3);
    assert_eq!(
        list(format!("ids={sam_id},{other_id}")).await,
        [sam_id.clone(), other_id.clone()]
    );
    assert!(
        list(format!("ids={}", uuid::Uuid::new_v4()))
            .await
            .is_empty()
    );
    assert_eq!(
        list(format!("ids={sam_id}&q=nobody")).await,
        Vec::<String>::new(),
        "every filter holds"
    );

    let too_many = vec![sam_id.as_str(); 101].join(",");
    let long = "x".repeat(101);
    for query in [
        "ids=not-an-id".to_owned(),
        format!("ids={sam_id},nope"),
        format!("ids={too_many}"),
        format!("q={long}"),
        "q=a%0Ab".to_owned(),
    ] {
        let body = problem(
            app.get_as(&admin.access, &format!("/admin/users?{query}"))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await;
        let field = query.split('=').next().unwrap();
        assert!(
            body["errors"].to_string().contains(&format!("\"{field}\"")),
            "{query}: {body}"
        );
    }
}
