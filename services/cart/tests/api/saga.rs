//! The checkout saga end to end (ARCHITECTURE §6).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn add_check_out_pay_and_the_order_completes() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    shop.cart(
        reqwest::Method::POST,
        "/items",
        &ada,
        Some(json!({ "product_id": mug, "quantity": 2 })),
    )
    .await;

    let response = shop.checkout(&ada, "checkout-1").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["total"]["amount"], 3600);
    // A retried checkout (same key) is the same order.
    let again: Value = shop
        .checkout(&ada, "checkout-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], order["id"]);

    shop.wait_order(&ada, &id, "awaiting_payment").await;
    assert_eq!(shop.stock(&mug).await, (3, 2, 0));
    // Something added after checkout stays in the cart when the order is paid.
    shop.cart(
        reqwest::Method::POST,
        "/items",
        &ada,
        Some(json!({ "product_id": mug, "quantity": 1 })),
    )
    .await;

    let paid = shop.pay_ready(&ada, &id, "pm_card_visa").await;
    assert_eq!(paid.status(), StatusCode::OK);
    let done = shop.wait_order(&ada, &id, "completed").await;
    assert_eq!(done["version"], 3);
    eventually("the reservation is sold", || async {
        shop.stock(&mug).await == (3, 0, 2)
    })
    .await;
    eventually("the paid lines leave the cart", || async {
        shop.view(&ada).await["count"] == 1
    })
    .await;
    problem(
        shop.pay(&ada, &id, "pm_card_visa").await,
        StatusCode::CONFLICT,
        "already-paid",
    )
    .await;
}

#[tokio::test]
async fn out_of_stock_cancels_the_order_and_nothing_is_charged() {
    let shop = shop().await;
    let lamp = shop.product("Lamp", 7900, 1).await;
    let ada = shop.customer();
    shop.cart(
        reqwest::Method::POST,
        "/items",
        &ada,
        Some(json!({ "product_id": lamp, "quantity": 2 })),
    )
    .await;
    let order: Value = shop.checkout(&ada, "k").await.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    let cancelled = shop.wait_order(&ada, id, "cancelled").await;
    assert_eq!(cancelled["reason"], "not enough stock for 1 item");
    problem(
        shop.pay(&ada, id, "pm_card_visa").await,
        StatusCode::CONFLICT,
        "order-not-payable",
    )
    .await;
    assert_eq!(shop.stock(&lamp).await, (1, 0, 0));
    assert_eq!(
        shop.view(&ada).await["count"],
        2,
        "an unpaid order leaves the cart as it was"
    );
}

#[tokio::test]
async fn a_declined_card_keeps_the_order_payable_and_the_stock_held() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    shop.cart(
        reqwest::Method::POST,
        "/items",
        &ada,
        Some(json!({ "product_id": mug, "quantity": 1 })),
    )
    .await;
    let order: Value = shop.checkout(&ada, "k").await.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    shop.wait_order(&ada, id, "awaiting_payment").await;
    problem(
        shop.pay_ready(&ada, id, "pm_card_chargeCustomerFail").await,
        StatusCode::PAYMENT_REQUIRED,
        "card-declined",
    )
    .await;
    assert_eq!(shop.order(&ada, id).await["state"], "awaiting_payment");
    assert_eq!(shop.stock(&mug).await, (4, 1, 0));
    assert_eq!(
        shop.pay(&ada, id, "pm_card_visa").await.status(),
        StatusCode::OK
    );
    shop.wait_order(&ada, id, "completed").await;
}
