//! Versioned writes (no lost updates), soft delete, stock changes with their ledger, and exactly
//! one event per write with the right version.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_events::Topic;

use crate::helpers::*;

#[tokio::test]
async fn updates_need_the_current_version() {
    let app = spawn_app().await;
    let product = app.product("Mug", "kitchen", 1800, 1).await;
    let path = format!("/{}", product["id"].as_str().unwrap());
    let patch = json!({ "title": "Big Mug" });

    let response = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.admin),
            None,
            Some(patch.clone()),
        )
        .await;
    problem(
        response,
        StatusCode::PRECONDITION_REQUIRED,
        "if-match-required",
    )
    .await;
    for stale in ["\"v0\"", "\"v2\"", "W/\"v1\"", "\"garbage\""] {
        let response = app
            .send(
                Method::PATCH,
                &path,
                Some(&app.admin),
                Some(stale),
                Some(patch.clone()),
            )
            .await;
        problem(
            response,
            StatusCode::PRECONDITION_FAILED,
            "version-mismatch",
        )
        .await;
    }
    // Not an entity tag at all: the header is malformed.
    for malformed in ["v1", "garbage"] {
        let response = app
            .send(
                Method::PATCH,
                &path,
                Some(&app.admin),
                Some(malformed),
                Some(patch.clone()),
            )
            .await;
        problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }

    // Two admins read v1; the first write wins, the second is told, not silently overwritten.
    let first = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.admin),
            Some("\"v1\""),
            Some(json!({ "price": { "amount": 2000, "currency": "USD" } })),
        )
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(etag(&first), "\"v2\"");
    let second = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.admin),
            Some("\"v1\""),
            Some(json!({ "title": "Other" })),
        )
        .await;
    problem(second, StatusCode::PRECONDITION_FAILED, "version-mismatch").await;
    let now: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(
        (now["title"].as_str(), now["price"]["amount"].as_i64()),
        (Some("Mug"), Some(2000))
    );

    // PUT replaces every detail and needs all of them.
    let put = json!({ "title": "Cup", "description": "", "category": "tableware", "price": { "amount": 900, "currency": "EUR" } });
    let response = app
        .send(
            Method::PUT,
            &path,
            Some(&app.admin),
            None,
            Some(put.clone()),
        )
        .await;
    problem(
        response,
        StatusCode::PRECONDITION_REQUIRED,
        "if-match-required",
    )
    .await;
    let response = app
        .send(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some("\"v2\""),
            Some(put),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cup: Value = response.json().await.unwrap();
    assert_eq!(
        (
            cup["title"].as_str(),
            cup["category"].as_str(),
            cup["version"].as_i64()
        ),
        (Some("Cup"), Some("tableware"), Some(3))
    );
    let response = app
        .send(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some("\"v3\""),
            Some(json!({ "title": "Cup" })),
        )
        .await;
    problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;

    // `*` means whatever version is current.
    let response = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.admin),
            Some("*"),
            Some(json!({ "description": "Any" })),
        )
        .await;
    assert_eq!(etag(&response), "\"v4\"");

    // A bad PATCH changes nothing, even with the right version.
    let response = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.admin),
            Some("\"v4\""),
            Some(json!({ "title": "", "price": { "amount": -1, "currency": "USD" } })),
        )
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields(&body), ["title", "price.amount"]);
    let response = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.admin),
            Some("\"v4\""),
            Some(json!({})),
        )
        .await;
    problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert_eq!(etag(&app.get(&path).await), "\"v4\"");
}

#[tokio::test]
async fn deleted_products_leave_the_shop_but_stay_stored() {
    let app = spawn_app().await;
    let product = app.product("Mug", "kitchen", 1800, 1).await;
    let id = product["id"].as_str().unwrap();
    let path = format!("/{id}");
    let response = app
        .send(Method::DELETE, &path, Some(&app.admin), None, None)
        .await;
    problem(
        response,
        StatusCode::PRECONDITION_REQUIRED,
        "if-match-required",
    )
    .await;
    let response = app
        .send(
            Method::DELETE,
            &path,
            Some(&app.admin),
            Some("\"v9\""),
            None,
        )
        .await;
    problem(
        response,
        StatusCode::PRECONDITION_FAILED,
        "version-mismatch",
    )
    .await;
    let response = app
        .send(
            Method::DELETE,
            &path,
            Some(&app.admin),
            Some("\"v1\""),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    problem(app.get(&path).await, StatusCode::NOT_FOUND, "not-found").await;
    let listed: Value = app.get("").await.json().await.unwrap();
    assert_eq!(listed["total"], 0);
    let response = app
        .send(Method::DELETE, &path, Some(&app.admin), Some("*"), None)
        .await;
    problem(response, StatusCode::NOT_FOUND, "not-found").await;
    // Still stored, for the orders that name it.
    assert!(app.store().has_any_product().await.unwrap());
}

#[tokio::test]
async fn stock_moves_with_a_reason_and_never_below_zero() {
    let app = spawn_app().await;
    let product = app.product("Mug", "kitchen", 1800, 5).await;
    let id = product["id"].as_str().unwrap();
    let path = format!("/{id}/stock");
    let post = |body: Value, tag: Option<&'static str>| {
        let app = &app;
        let path = path.clone();
        async move {
            app.send(Method::POST, &path, Some(&app.admin), tag, Some(body))
                .await
        }
    };

    let response = post(
        json!({ "adjust": -2, "reason": "two broke in the warehouse" }),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["available"].as_i64(), body["version"].as_i64()),
        (Some(3), Some(2))
    );

    let response = post(json!({ "adjust": -4, "reason": "oops" }), None).await;
    let body = problem(response, StatusCode::CONFLICT, "stock-conflict").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("only 3 are available")
    );
    let response = post(json!({ "set": 10, "reason": "recount" }), Some("\"v1\"")).await;
    problem(
        response,
        StatusCode::PRECONDITION_FAILED,
        "version-mismatch",
    )
    .await;
    let response = post(json!({ "set": 10, "reason": "recount" }), Some("\"v2\"")).await;
    assert_eq!(response.status(), StatusCode::OK);

    for (body, field) in [
        (json!({ "reason": "nothing" }), "set"),
        (json!({ "set": 1, "adjust": 1, "reason": "both" }), "set"),
        (json!({ "adjust": 0, "reason": "zero" }), "set"),
        (json!({ "set": -1, "reason": "negative" }), "set"),
        (json!({ "set": 1, "reason": "  " }), "reason"),
    ] {
        let response = post(body, None).await;
        let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(fields(&problem), [field]);
    }
    // An invalid body is its own answer whatever If-Match says (the fuzz run sent a stale or
    // empty tag with a bad body and got 412); a value that is no entity tag at all is a 400.
    for tag in ["\"v1\"", "", "W/\"v3\""] {
        let response = post(json!({ "set": 1, "reason": "" }), Some(tag)).await;
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    }
    for tag in ["", "v3", "\"v3"] {
        let response = post(json!({ "set": 1, "reason": "a" }), Some(tag)).await;
        problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    problem(
        post(json!({ "set": 1 }), None).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    problem(
        post(json!({ "set": "1", "reason": "x" }), None).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;

    let response = app
        .send(Method::GET, &path, Some(&app.admin), None, None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let view: Value = response.json().await.unwrap();
    assert_eq!(
        view["stock"],
        json!({ "available": 10, "reserved": 0, "sold": 0 })
    );
    let ledger = view["ledger"].as_array().unwrap();
    let moves: Vec<(i64, &str)> = ledger
        .iter()
        .map(|e| (e["delta"].as_i64().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        moves,
        [
            (7, "recount"),
            (-2, "two broke in the warehouse"),
            (5, "initial stock")
        ]
    );
    assert!(ledger.iter().all(|e| e["actor"].is_string()));
    // Plain JSON a client reads: an RFC 3339 time and an `id`, not MongoDB's extended JSON.
    for entry in ledger {
        let at = entry["at"].as_str().expect("`at` is text");
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
        assert!(entry["id"].is_string() && entry.get("_id").is_none());
    }
}

#[tokio::test]
async fn every_write_publishes_one_event_with_its_version() {
    let app = spawn_app().await;
    let product = app.product("Mug", "kitchen", 1800, 0).await;
    let id = product["id"].as_str().unwrap().to_owned();
    let path = format!("/{id}");
    let ok = |r: reqwest::Response| assert!(r.status().is_success(), "{}", r.status());
    ok(app
        .send(
            Method::PATCH,
            &path,
            Some(&app.admin),
            Some("\"v1\""),
            Some(json!({ "title": "Big Mug" })),
        )
        .await);
    ok(app
        .send(
            Method::POST,
            &format!("{path}/stock"),
            Some(&app.admin),
            None,
            Some(json!({ "adjust": 4, "reason": "delivery" })),
        )
        .await);
    ok(app
        .upload(
            &id,
            png(64, 64, [1, 2, 3], [200, 100, 50]),
            "mug.png",
            false,
        )
        .await);
    // A refused write publishes nothing.
    let refused = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.admin),
            Some("\"v1\""),
            Some(json!({ "title": "Lost" })),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
    ok(app
        .send(
            Method::DELETE,
            &path,
            Some(&app.admin),
            Some("\"v4\""),
            None,
        )
        .await);

    let topic = Topic::Products.name(&app.config.common.kafka.topic_prefix);
    let events = storefront_kit::testing::consume(&app.stack.kafka_bootstrap, &topic, 5).await;
    let seen: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.version))
        .collect();
    assert_eq!(
        seen,
        [
            ("product.created", 1),
            ("product.updated", 2),
            ("stock.changed", 3),
            ("product.updated", 4),
            ("product.deleted", 5),
        ]
    );
    assert!(events.iter().all(|e| e.key == id && e.source == "products"));
    assert_eq!(events[1].data["product"]["title"], "Big Mug");
    assert_eq!(events[2].data["delta"], 4);
    assert_eq!(events[2].data["stock"]["available"], 4);
    assert_eq!(
        events[3].data["product"]["images"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let _ = app.stop.send(true);
}
