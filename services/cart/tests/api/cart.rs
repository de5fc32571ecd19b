//! The cart's own endpoints and their failure paths.

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_cart_holds_lines_shown_from_the_replica() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let lamp = shop.product("Lamp", 7900, 1).await;
    let ada = shop.customer();
    assert_eq!(
        shop.view(&ada).await,
        json!({ "items": [], "subtotal": null, "estimate": null, "count": 0, "version": 0, "held": [] })
    );

    let add = |product: &str, quantity: i64| json!({ "product_id": product, "quantity": quantity });
    assert_eq!(
        shop.cart(Method::POST, "/items", &ada, Some(add(&mug, 2)))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        shop.cart(Method::POST, "/items", &ada, Some(add(&mug, 1)))
            .await
            .status(),
        StatusCode::OK
    );
    let cart: serde_json::Value = shop
        .cart(Method::POST, "/items", &ada, Some(add(&lamp, 2)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["count"], 5);
    let mug_line = &cart["items"][0];
    assert_eq!(
        (mug_line["title"].as_str(), mug_line["quantity"].as_i64()),
        (Some("Mug"), Some(3))
    );
    assert_eq!(mug_line["line_total"]["amount"], 5400);
    assert_eq!(mug_line["orderable"], true);
    // Two lamps wanted, one in stock: shown, but not orderable, and not in the subtotal.
    assert_eq!(cart["items"][1]["orderable"], false);
    assert_eq!(
        cart["subtotal"],
        json!({ "amount": 5400, "currency": "USD" })
    );

    let cart: serde_json::Value = shop
        .cart(
            Method::PATCH,
            &format!("/items/{lamp}"),
            &ada,
            Some(json!({ "quantity": 1 })),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["subtotal"]["amount"], 5400 + 7900);
    assert_eq!(
        shop.cart(Method::DELETE, &format!("/items/{mug}"), &ada, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(shop.view(&ada).await["count"], 1);
    // Someone else's cart is their own.
    assert_eq!(shop.view(&shop.customer()).await["count"], 0);
}

#[tokio::test]
async fn bad_cart_requests_are_refused() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    for (body, field) in [
        (json!({ "product_id": mug, "quantity": 0 }), "quantity"),
        (json!({ "product_id": mug, "quantity": 101 }), "quantity"),
        (json!({ "product_id": "mug", "quantity": 1 }), "product_id"),
        (
            json!({ "product_id": Uuid::new_v4(), "quantity": 1 }),
            "product_id",
        ),
    ] {
        let response = shop.cart(Method::POST, "/items", &ada, Some(body)).await;
        let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
    shop.cart(
        Method::POST,
        "/items",
        &ada,
        Some(json!({ "product_id": mug, "quantity": 60 })),
    )
    .await;
    let response = shop
        .cart(
            Method::POST,
            "/items",
            &ada,
            Some(json!({ "product_id": mug, "quantity": 41 })),
        )
        .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    for body in [
        json!({ "product_id": mug, "quantity": 1, "price": 1 }),
        json!({ "product_id": mug }),
    ] {
        let response = shop.cart(Method::POST, "/items", &ada, Some(body)).await;
        problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    let other = Uuid::new_v4();
    let response = shop
        .cart(
            Method::PATCH,
            &format!("/items/{other}"),
            &ada,
            Some(json!({ "quantity": 1 })),
        )
        .await;
    problem(response, StatusCode::NOT_FOUND, "not-found").await;
    let response = shop
        .cart(
            Method::PATCH,
            &format!("/items/{mug}"),
            &ada,
            Some(json!({ "quantity": 0 })),
        )
        .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let response = shop
        .cart(Method::DELETE, &format!("/items/{other}"), &ada, None)
        .await;
    problem(response, StatusCode::NOT_FOUND, "not-found").await;
    let response = shop
        .call(
            Method::GET,
            format!("http://{}/api/cart", shop.cart),
            None,
            None,
        )
        .await;
    problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let response = shop.cart(Method::POST, "/checkout", &ada, None).await;
    let missing = problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert!(
        missing["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("checkout needs an Idempotency-Key header")),
        "{missing}"
    );
    for key in ["", " ", "k\u{e9}y", &"k".repeat(101)] {
        let response = shop
            .http
            .post(format!("http://{}/api/cart/checkout", shop.cart))
            .bearer_auth(&ada.token)
            .header("idempotency-key", key.as_bytes())
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    let bob = shop.customer();
    problem(
        shop.checkout(&bob, "k1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(shop.view(&ada).await["count"], 60);
}

/// What the cart channel said next (within 10 s).
async fn heard(
    news: &mut (impl futures::Stream<Item = redis::Msg> + Unpin),
) -> storefront_kit::fanout::CartCount {
    use futures::StreamExt;
    let message = tokio::time::timeout(std::time::Duration::from_secs(10), news.next())
        .await
        .expect("news within 10 s")
        .expect("the subscription is open");
    serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap()
}

/// Every write of a cart's items says its new count on the shop's channel (notifications hands
/// it to the customer's pages): a line added, the lines a checkout holds, the lines a cancelled
/// order puts back.
#[tokio::test]
async fn each_change_of_the_items_announces_the_carts_count() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let client = redis::Client::open(shop.stack.redis_url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(storefront_kit::fanout::CartCount::channel(&shop.prefix))
        .await
        .unwrap();
    let mut news = pubsub.into_on_message();

    let added = shop
        .cart(
            Method::POST,
            "/items",
            &ada,
            Some(json!({ "product_id": mug, "quantity": 2 })),
        )
        .await;
    assert_eq!(added.status(), StatusCode::OK);
    let cart: serde_json::Value = added.json().await.unwrap();
    let first = heard(&mut news).await;
    assert_eq!((first.user, first.count), (ada.id.into(), 2));
    assert_eq!(
        first.version,
        cart["version"].as_i64().unwrap(),
        "the version the API shows"
    );

    let placed = shop.checkout(&ada, "key-1").await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let order: serde_json::Value = placed.json().await.unwrap();
    let held = heard(&mut news).await;
    assert_eq!(held.count, 0, "the checkout holds the lines");
    assert!(held.version > first.version);

    let order = order["id"].as_str().unwrap();
    shop.wait_order(&ada, order, "awaiting_payment").await;
    assert_eq!(shop.cancel(&ada, order).await.status(), StatusCode::OK);
    let back = heard(&mut news).await;
    assert_eq!(back.count, 2, "the cancelled order's lines are back");
    assert!(back.version > held.version);
    // And kept, for a page that opens its socket after it was said.
    let redis = redis::Client::open(shop.stack.redis_url.as_str())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    eventually("the latest count is kept", || async {
        storefront_kit::fanout::CartCount::latest(&redis, &shop.prefix, ada.id.into()).await
            == Some(back)
    })
    .await;
}
