//! Paying an order: the amount is ours, a decline leaves it payable, paying twice charges once,
//! other people's orders do not exist, and a payment for an order cancelled meanwhile is refunded.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_card_pays_the_order_once() {
    let app = app().await;
    let ada = app.customer();
    let order = app.order(&ada, 4200, true).await;
    let response = app.pay(&ada, order, "pm_card_visa").await;
    let status = response.status();
    let paid: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["amount"], json!({ "amount": 4200, "currency": "USD" }));

    let record = app.store.payment(order).await.unwrap().unwrap();
    let intent = app
        .intent(record.payment_intent_id.as_deref().unwrap())
        .await;
    assert_eq!(
        (intent["amount"].as_i64(), intent["status"].as_str()),
        (Some(4200), Some("succeeded"))
    );
    assert_eq!(intent["metadata"]["order_id"], order.to_string());

    problem(
        app.pay(&ada, order, "pm_card_visa").await,
        StatusCode::CONFLICT,
        "already-paid",
    )
    .await;
    let events = app.events(order, 1).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["payment.succeeded"]);
    assert_eq!(events[0].data["amount"]["amount"], 4200);
    assert_eq!(events[0].data["user_id"], ada.id.to_string());

    let response = app
        .http
        .get(app.url(&format!("/{order}")))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    let shown: Value = response.json().await.unwrap();
    assert_eq!(
        (shown["status"].as_str(), shown["attempts"].as_u64()),
        (Some("succeeded"), Some(1))
    );
}

#[tokio::test]
async fn a_declined_card_leaves_the_order_payable() {
    let app = app().await;
    let ada = app.customer();
    let order = app.order(&ada, 1800, true).await;
    let body = problem(
        app.pay(&ada, order, "pm_card_chargeCustomerFail").await,
        StatusCode::PAYMENT_REQUIRED,
        "card-declined",
    )
    .await;
    assert!(!body["detail"].as_str().unwrap().is_empty());
    let record = app.store.payment(order).await.unwrap().unwrap();
    assert_eq!(record.attempts, 1);

    let response = app.pay(&ada, order, "pm_card_visa").await;
    assert_eq!(response.status(), StatusCode::OK);
    let events = app.events(order, 2).await;
    let seen: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.version))
        .collect();
    assert_eq!(seen, [("payment.failed", 1), ("payment.succeeded", 2)]);
    assert_eq!(events[0].data["attempt"], 1);
}

#[tokio::test]
async fn paying_twice_at_once_charges_once() {
    let app = app().await;
    let ada = app.customer();
    let order = app.order(&ada, 2500, true).await;
    let attempts: Vec<_> = (0..6)
        .map(|_| app.pay(&ada, order, "pm_card_visa"))
        .collect();
    let mut statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses[1..].iter().all(|s| *s == 409), "{statuses:?}");
    let events = app.events(order, 1).await;
    assert_eq!(events.len(), 1);
    let record = app.store.payment(order).await.unwrap().unwrap();
    let intent = app
        .intent(record.payment_intent_id.as_deref().unwrap())
        .await;
    assert_eq!(intent["amount_received"], 2500);
}

#[tokio::test]
async fn only_my_payable_orders_can_be_paid_and_the_amount_is_never_mine_to_set() {
    let app = app().await;
    let (ada, eve) = (app.customer(), app.customer());
    let order = app.order(&ada, 1000, true).await;
    let pending = app.order(&ada, 1000, false).await;

    for id in [order, Uuid::new_v4()] {
        problem(
            app.pay(&eve, id, "pm_card_visa").await,
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
    }
    problem(
        app.pay(&ada, pending, "pm_card_visa").await,
        StatusCode::CONFLICT,
        "order-not-payable",
    )
    .await;
    for method in ["4242424242424242", "", "tok_visa"] {
        let body = problem(
            app.pay(&ada, order, method).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "payment_method");
    }
    for body in [
        json!({ "order_id": order, "payment_method": "pm_card_visa", "amount": 1 }),
        json!({ "order_id": order }),
        json!({ "order_id": 5, "payment_method": "pm_card_visa" }),
    ] {
        let response = app
            .http
            .post(app.url(""))
            .bearer_auth(&ada.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    let response = app
        .http
        .post(app.url(""))
        .json(&json!({ "order_id": order, "payment_method": "pm_card_visa" }))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let response = app
        .http
        .get(app.url(&format!("/{order}")))
        .bearer_auth(&eve.token)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND, "not-found").await;

    app.cancel(&ada, order, 3).await;
    app.wait_replica(order, "cancelled").await;
    problem(
        app.pay(&ada, order, "pm_card_visa").await,
        StatusCode::CONFLICT,
        "order-not-payable",
    )
    .await;
    assert!(
        app.store.payment(order).await.unwrap().is_none(),
        "nothing reached Stripe"
    );
}

#[tokio::test]
async fn a_payment_for_an_order_cancelled_meanwhile_is_refunded() {
    let app = app().await;
    let ada = app.customer();
    let order = app.order(&ada, 3300, true).await;
    assert_eq!(
        app.pay(&ada, order, "pm_card_visa").await.status(),
        StatusCode::OK
    );
    // The order expired on the orders side as the payment went through.
    app.cancel(&ada, order, 3).await;
    let events = app.events(order, 2).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["payment.succeeded", "payment.refunded"]);
    let record = app.store.payment(order).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        storefront_payments::store::PaymentStatus::Refunded
    );
    let intent = app
        .intent(record.payment_intent_id.as_deref().unwrap())
        .await;
    let refunded = intent["charges"]["data"][0]["amount_refunded"].as_i64();
    assert!(
        refunded == Some(3300) || intent["charges"].is_null(),
        "{intent}"
    );
}
