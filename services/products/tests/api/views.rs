//! Product views: counted as customers read products (not admins), published as
//! `product.viewed`, consumed into the counters behind the admin's stats and the `popular` order.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_events::Topic;

use crate::helpers::*;

async fn stats(app: &TestApp, query: &str) -> Value {
    let response = app
        .send(
            Method::GET,
            &format!("/admin/stats{query}"),
            Some(&app.admin),
            None,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Waits until the stats count `views` in all (the consumer applies the flushed batch).
async fn wait_for_views(app: &TestApp, views: i64) -> Value {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Two days, so a test that crosses midnight (UTC) still finds its views.
        let stats = stats(app, "?days=2").await;
        if stats["views"] == views {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "views never reached {views}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn customers_reads_are_counted_admins_are_not_and_popular_follows_them() {
    let app = consuming_app().await;
    let kettle = app.product("Kettle", "kitchen", 3000, 5).await;
    let lamp = app.product("Lamp", "home", 2000, 5).await;
    let (kettle, lamp) = (
        kettle["id"].as_str().unwrap().to_owned(),
        lamp["id"].as_str().unwrap().to_owned(),
    );
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/{lamp}")).await.status(), StatusCode::OK);
    }
    // A customer's token is a customer's view; a stale or forged token still reads (the read is
    // public) and counts as a customer's.
    for token in [app.customer.as_str(), "not.a.token"] {
        let response = app
            .send(Method::GET, &format!("/{kettle}"), Some(token), None, None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // An admin at work is not a view; nor is a product that does not exist.
    for _ in 0..5 {
        let response = app
            .send(
                Method::GET,
                &format!("/{kettle}"),
                Some(&app.admin),
                None,
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let missing = uuid::Uuid::now_v7();
    assert_eq!(
        app.get(&format!("/{missing}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.state.analytics.flush().await.unwrap(),
        2,
        "one event per product"
    );
    assert_eq!(
        app.state.analytics.flush().await.unwrap(),
        0,
        "a batch is published once"
    );

    let stats = wait_for_views(&app, 5).await;
    let by_day: i64 = stats["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["views"].as_i64().unwrap())
        .sum();
    assert_eq!(by_day, 5);
    let top: Vec<(&str, i64)> = stats["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["title"].as_str().unwrap(), p["views"].as_i64().unwrap()))
        .collect();
    assert_eq!(top, vec![("Lamp", 3), ("Kettle", 2)]);

    // Popular: most viewed first, whatever the order of creation.
    let list: Value = app.get("?sort=popular").await.json().await.unwrap();
    let titles: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Lamp", "Kettle"]);

    // An admin's edit (a write of every field at a new version) keeps the counts: it sets no
    // count at all (the unit test in src/store/catalog.rs pins the fields it sets).
    let response = app
        .send(
            Method::PATCH,
            &format!("/{lamp}"),
            Some(&app.admin),
            Some("*"),
            Some(json!({ "title": "Desk lamp" })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let lamp_doc = app
        .store()
        .get(lamp.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lamp_doc.views, 3, "the edit did not put the count back");
    let list: Value = app.get("?sort=popular").await.json().await.unwrap();
    assert_eq!(list["items"][0]["title"], "Desk lamp");
}

/// A batch redelivered (a replay, a consumer restarted before its commit) is counted once.
#[tokio::test]
async fn a_view_event_applied_twice_counts_once() {
    let app = consuming_app().await;
    let mug = app.product("Mug", "kitchen", 900, 5).await;
    let mug = mug["id"].as_str().unwrap().to_owned();
    app.get(&format!("/{mug}")).await;
    app.state.analytics.flush().await.unwrap();
    wait_for_views(&app, 1).await;
    // The same event again, as the relay sends it after a crash between its send and its mark;
    // then a new view behind it on the product's partition.
    let topic = Topic::ProductViews.name(&app.config.common.kafka.topic_prefix);
    let sent = storefront_kit::testing::consume(&app.stack.kafka_bootstrap, &topic, 1).await;
    assert_eq!(sent[0].event_type, "product.viewed");
    assert_eq!(sent[0].data["count"], 1);
    let producer = storefront_kit::kafka::producer(&app.config.common.kafka).unwrap();
    send(&app, &producer, Topic::ProductViews, &sent[0]).await;
    // Five more behind it on the product's partition: 6 in all only if the replay counted
    // nothing (else 2, then 7, never 6).
    for _ in 0..5 {
        app.get(&format!("/{mug}")).await;
    }
    app.state.analytics.flush().await.unwrap();
    let stats = wait_for_views(&app, 6).await;
    assert_eq!(stats["top"][0]["views"], 6);
}

#[tokio::test]
async fn only_an_admin_reads_the_views_and_only_for_1_to_90_days() {
    let app = spawn_app().await;
    let response = app.get("/admin/stats").await;
    problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let response = app
        .send(Method::GET, "/admin/stats", Some(&app.customer), None, None)
        .await;
    problem(response, StatusCode::FORBIDDEN, "admin-only").await;
    for days in ["0", "91", "-3", "a week", "2.5"] {
        let response = app
            .send(
                Method::GET,
                &format!("/admin/stats?days={days}"),
                Some(&app.admin),
                None,
                None,
            )
            .await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(fields(&body), ["days"], "{days}");
    }
    let response = app
        .send(
            Method::GET,
            "/admin/stats?top=3",
            Some(&app.admin),
            None,
            None,
        )
        .await;
    problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    let empty = stats(&app, "").await;
    assert_eq!(empty["days"].as_array().unwrap().len(), 30);
    assert_eq!((&empty["views"], &empty["top"]), (&json!(0), &json!([])));
    // And `popular` is an order the list knows; others are still refused.
    let response = app.get("?sort=views").await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("popular")
    );
}
