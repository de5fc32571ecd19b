//! Placing and reading orders: validation, idempotency, who may see what.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_kit::auth::Role;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn bad_orders_are_refused_with_the_field() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let cases = [
        (json!([]), "lines"),
        (
            json!([{ "product_id": mug, "quantity": 0 }]),
            "lines[0].quantity",
        ),
        (
            json!([{ "product_id": mug, "quantity": 101 }]),
            "lines[0].quantity",
        ),
        (
            json!([{ "product_id": "mug", "quantity": 1 }]),
            "lines[0].product_id",
        ),
        (
            json!([{ "product_id": Uuid::new_v4(), "quantity": 1 }]),
            "lines",
        ),
        (
            json!([{ "product_id": mug, "quantity": 60 }, { "product_id": mug, "quantity": 60 }]),
            "lines",
        ),
    ];
    for (lines, field) in cases {
        let body = problem(
            shop.place(&ada, lines.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], field, "{lines}");
    }
    // The client never names a price or total: such fields are refused, not ignored.
    for body in [
        json!({ "lines": [{ "product_id": mug, "quantity": 1, "unit_price": 1 }] }),
        json!({ "lines": [{ "product_id": mug, "quantity": 1 }], "total": { "amount": 1, "currency": "USD" } }),
        json!({ "lines": "all of them" }),
    ] {
        let response = shop
            .orders(Method::POST, "", Some(&ada.token), Some(body))
            .await;
        problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    let response = shop
        .orders(Method::POST, "", None, Some(json!({ "lines": [] })))
        .await;
    problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let mine: Value = shop
        .orders(Method::GET, "", Some(&ada.token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 0);
}

async fn place_with_key(shop: &Shop, who: &Customer, key: &str, lines: Value) -> reqwest::Response {
    shop.http
        .post(format!("http://{}/api/orders", shop.orders))
        .bearer_auth(&who.token)
        .header("idempotency-key", key)
        .json(&json!({ "lines": lines }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_order() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 50).await;
    let ada = shop.customer();
    let lines = json!([{ "product_id": mug, "quantity": 1 }]);
    let first: Value = place_with_key(&shop, &ada, "checkout-1", lines.clone())
        .await
        .json()
        .await
        .unwrap();
    let again = place_with_key(&shop, &ada, "checkout-1", lines.clone()).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    // Eight at once with one key: one order.
    let racers: Vec<_> = (0..8)
        .map(|_| place_with_key(&shop, &ada, "checkout-2", lines.clone()))
        .collect();
    let mut ids = Vec::new();
    for response in futures::future::join_all(racers).await {
        assert_eq!(response.status(), StatusCode::CREATED);
        ids.push(response.json::<Value>().await.unwrap()["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // The same key for different lines is a mistake, not a new order.
    let other = json!([{ "product_id": mug, "quantity": 2 }]);
    problem(
        place_with_key(&shop, &ada, "checkout-1", other).await,
        StatusCode::CONFLICT,
        "idempotency-key-reused",
    )
    .await;
    // Keys are per customer.
    let bob = shop.customer();
    let bobs: Value = place_with_key(&shop, &bob, "checkout-1", lines.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(bobs["id"], first["id"]);
    for bad in ["", &"k".repeat(101), "has space"] {
        problem(
            place_with_key(&shop, &ada, bad, lines.clone()).await,
            StatusCode::BAD_REQUEST,
            "malformed-request",
        )
        .await;
    }
    // The body is read before the key: a body that is not JSON is 415 whatever the key says.
    let not_json = shop
        .http
        .post(format!("http://{}/api/orders", shop.orders))
        .bearer_auth(&ada.token)
        .header("idempotency-key", "has space")
        .header("content-type", "text/plain")
        .body("lines")
        .send()
        .await
        .unwrap();
    problem(
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;

    let mine: Value = shop
        .orders(Method::GET, "", Some(&ada.token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 2);
}

#[tokio::test]
async fn customers_see_only_their_own_orders_and_admins_see_all() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 50).await;
    let (ada, bob) = (shop.customer(), shop.customer());
    let mut adas = Vec::new();
    for _ in 0..3 {
        let order: Value = shop
            .place(&ada, json!([{ "product_id": mug, "quantity": 1 }]))
            .await
            .json()
            .await
            .unwrap();
        adas.push(order["id"].as_str().unwrap().to_owned());
    }
    let bobs: Value = shop
        .place(&bob, json!([{ "product_id": mug, "quantity": 1 }]))
        .await
        .json()
        .await
        .unwrap();
    let bobs = bobs["id"].as_str().unwrap();

    // Another customer's order, an unknown id and a malformed one all look the same.
    for id in [
        bobs.to_owned(),
        Uuid::new_v4().to_string(),
        "nope".to_owned(),
    ] {
        let response = shop
            .orders(Method::GET, &format!("/{id}"), Some(&ada.token), None)
            .await;
        problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }
    let page: Value = shop
        .orders(Method::GET, "?per_page=2", Some(&ada.token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 3);
    let newest: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(newest, [adas[2].as_str(), adas[1].as_str()]);

    assert_eq!(
        shop.order(&shop.admin, bobs).await["user_id"],
        bob.id.to_string()
    );
    let response = shop
        .orders(Method::GET, "/admin/all", Some(&ada.token), None)
        .await;
    problem(response, StatusCode::FORBIDDEN, "admin-only").await;
    let all: Value = shop
        .orders(Method::GET, "/admin/all", Some(&shop.admin), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["total"], 4);
    shop.wait_state(&ada.token, &adas[0], "awaiting_payment")
        .await;
    let awaiting: Value = shop
        .orders(
            Method::GET,
            "/admin/all?status=awaiting_payment&per_page=100",
            Some(&shop.admin),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        awaiting["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["state"] == "awaiting_payment")
    );
    assert!(awaiting["total"].as_u64().unwrap() >= 1);

    for query in ["?status=shipped", "?per_page=0", "?per_page=101", "?page=0"] {
        let response = shop
            .orders(Method::GET, query, Some(&ada.token), None)
            .await;
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    }
    let response = shop
        .orders(Method::GET, "?colour=red", Some(&ada.token), None)
        .await;
    problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    let response = shop
        .orders(
            Method::GET,
            "",
            Some(&shop.mint(Uuid::new_v4(), Role::Customer)),
            None,
        )
        .await;
    let empty: Value = response.json().await.unwrap();
    assert_eq!(empty["total"], 0);
}

/// A browser walk found every order placed within a minute shown under the same "number" (the
/// first 8 characters of a time-ordered id). Orders have a number of their own: unique, growing,
/// kept by a retry with the same key.
#[tokio::test]
async fn every_order_has_a_number_of_its_own() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 100).await;
    let lines = json!([{ "product_id": mug, "quantity": 1 }]);
    let customers: Vec<_> = (0..3).map(|_| shop.customer()).collect();
    let placing: Vec<_> = (0..24)
        .map(|i| shop.place(&customers[i % 3], lines.clone()))
        .collect();
    let mut numbers = Vec::new();
    for response in futures::future::join_all(placing).await {
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.unwrap();
        numbers.push(order["number"].as_i64().expect("a number"));
    }
    let distinct: std::collections::BTreeSet<i64> = numbers.iter().copied().collect();
    assert_eq!(distinct.len(), numbers.len(), "{numbers:?}");
    assert!(numbers.iter().all(|n| *n > 1000), "{numbers:?}");

    // One after another, they grow; the number is the order's (read back, and on a retry).
    let ada = &customers[0];
    let first: Value = place_with_key(&shop, ada, "numbered-1", lines.clone())
        .await
        .json()
        .await
        .unwrap();
    let second: Value = place_with_key(&shop, ada, "numbered-2", lines.clone())
        .await
        .json()
        .await
        .unwrap();
    assert!(second["number"].as_i64() > first["number"].as_i64());
    assert!(first["number"].as_i64() > distinct.last().copied());
    let again: Value = place_with_key(&shop, ada, "numbered-1", lines.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["number"], first["number"]);
    let id = first["id"].as_str().unwrap();
    assert_eq!(shop.order(&ada.token, id).await["number"], first["number"]);
}
