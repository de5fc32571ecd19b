//! Paying an order: orders holds it first (the amount is orders', a cancel waits), a decline
//! leaves it payable, paying twice charges once, other people's orders do not exist, and a refund
//! orders asks for is retried until Stripe confirms it.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use storefront_events::{Money, orders::OrderRefundDue};
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
    // What orders priced the order at: the item and the shop's charges.
    let total = app.order_view(&ada, order).await["total"]["amount"]
        .as_i64()
        .unwrap();
    assert!(total > 4200);
    assert_eq!(
        paid["amount"],
        json!({ "amount": total, "currency": "USD" })
    );
    let kinds: Vec<&str> = paid["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["shipping", "fee", "tax"]);

    let record = app.store.payment(order.into()).await.unwrap().unwrap();
    let intent = app
        .intent(record.payment_intent_id.as_deref().unwrap())
        .await;
    assert_eq!(
        (intent["amount"].as_i64(), intent["status"].as_str()),
        (Some(total), Some("succeeded"))
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
    assert_eq!(events[0].data["amount"]["amount"], total);
    assert_eq!(events[0].data["user_id"], ada.id.to_string());

    let shown = app.payment(&ada, order).await;
    assert_eq!(
        (shown["status"].as_str(), shown["attempts"].as_u64()),
        (Some("succeeded"), Some(1))
    );
    // orders completed it, and a paid order is no longer the customer's to cancel.
    app.wait_order(&ada, order, "completed").await;
    problem(
        app.cancel(&ada, order).await,
        StatusCode::CONFLICT,
        "order-state",
    )
    .await;
}

#[tokio::test]
async fn paying_right_after_checkout_waits_for_the_stock_instead_of_refusing() {
    let app = app().await;
    let ada = app.customer();
    // Not waited for: the stock is still being reserved when the payment comes.
    let order = app.order(&ada, 1200, false).await;
    let response = app.pay(&ada, order, "pm_card_visa").await;
    assert_eq!(response.status(), StatusCode::OK);
    app.wait_order(&ada, order, "completed").await;
}

#[tokio::test]
async fn a_declined_card_leaves_the_order_payable_and_cancellable() {
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
    let record = app.store.payment(order.into()).await.unwrap().unwrap();
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

    // Another order, declined: once orders hears of the failure the hold ends and the customer
    // can cancel at once.
    let other = app.order(&ada, 1800, true).await;
    assert_eq!(
        app.pay(&ada, other, "pm_card_chargeCustomerFail")
            .await
            .status(),
        StatusCode::PAYMENT_REQUIRED
    );
    eventually("the declined order can be cancelled", || async {
        app.cancel(&ada, other).await.status() == StatusCode::OK
    })
    .await;
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
    let record = app.store.payment(order.into()).await.unwrap().unwrap();
    let intent = app
        .intent(record.payment_intent_id.as_deref().unwrap())
        .await;
    assert_eq!(
        intent["amount_received"],
        app.order_view(&ada, order).await["total"]["amount"]
    );
}

#[tokio::test]
async fn only_my_payable_orders_can_be_paid_and_the_amount_is_never_mine_to_set() {
    let app = app().await;
    let (ada, eve) = (app.customer(), app.customer());
    let order = app.order(&ada, 1000, true).await;

    for id in [order, Uuid::new_v4()] {
        problem(
            app.pay(&eve, id, "pm_card_visa").await,
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
    }
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
    problem(
        app.pay(&ada, Uuid::new_v4(), "pm_card_visa").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
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

    assert_eq!(app.cancel(&ada, order).await.status(), StatusCode::OK);
    let body = problem(
        app.pay(&ada, order, "pm_card_visa").await,
        StatusCode::CONFLICT,
        "order-not-payable",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("cancelled"),
        "{body}"
    );
    assert!(
        app.store.payment(order.into()).await.unwrap().is_none(),
        "nothing reached Stripe"
    );
}

#[tokio::test]
async fn orders_not_answering_is_a_503_and_nothing_is_charged() {
    // Nothing listens on port 9.
    let app = app_with(|config| config.orders_url = "http://127.0.0.1:9".into()).await;
    let ada = app.customer();
    let order = app.order(&ada, 1000, true).await;
    problem(
        app.pay(&ada, order, "pm_card_visa").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    assert!(app.store.payment(order.into()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_refund_stripe_refuses_is_kept_and_retried_until_stripe_confirms_it() {
    let app = app().await;
    let ada = app.customer();
    let order = app.order(&ada, 3300, true).await;
    // A declined attempt leaves a PaymentIntent with no money on it: Stripe refuses to refund it.
    assert_eq!(
        app.pay(&ada, order, "pm_card_chargeCustomerFail")
            .await
            .status(),
        StatusCode::PAYMENT_REQUIRED
    );
    let intent = app
        .store
        .payment(order.into())
        .await
        .unwrap()
        .unwrap()
        .payment_intent_id
        .unwrap();
    // orders asks for the refund (as it does when money arrives for an order that ended).
    let total = app.order_view(&ada, order).await["total"]["amount"]
        .as_i64()
        .unwrap();
    let due = OrderRefundDue {
        order_id: order.into(),
        user_id: ada.id.into(),
        payment_intent_id: intent.clone(),
        amount: Money {
            amount: total,
            currency: "USD".into(),
        },
        reason: "the payment arrived after the order had ended".into(),
        due_at: Utc::now(),
    };
    app.publish(order, 9, due.clone()).await;
    eventually("Stripe refused the first attempt", || async {
        let shown = app.payment(&ada, order).await;
        shown["status"] == "refund_due"
            && shown["refund"]["attempts"].as_u64() >= Some(1)
            && shown["refund"]["last_error"].is_string()
    })
    .await;
    // The same request again (a redelivery) is the same refund.
    app.publish(order, 9, due).await;

    // The customer's money does arrive after all (say a 3-D Secure confirmation came late).
    let response = app
        .http
        .post(format!(
            "{}/v1/payment_intents/{intent}/confirm",
            app.stack.stripe_url
        ))
        .basic_auth(&app.stack.stripe_secret_key, Some(""))
        .form(&[("payment_method", "pm_card_visa")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    eventually("the refund is confirmed", || async {
        app.payment(&ada, order).await["status"] == "refunded"
    })
    .await;
    let shown = app.payment(&ada, order).await;
    assert_eq!(shown["refund"]["status"], "refunded");
    assert!(shown["refund"].get("last_error").is_none(), "{shown}");
    assert_eq!(app.refunds(&intent).await.len(), 1, "refunded exactly once");
    let events = app.events(order, 2).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["payment.failed", "payment.refunded"]);
    assert_eq!(events[1].data["amount"]["amount"], total);
    let refund = &app.refunds(&intent).await[0];
    assert_eq!(refund["amount"], total, "the whole payment went back");
    assert!(events[1].data["refund_id"].is_string());
}
