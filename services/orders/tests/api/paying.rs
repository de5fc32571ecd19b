//! orders as the one owner of an order's fate (docs/saga.md): payments' hold, which a cancel and
//! the expiry wait for; money that arrives for an order that ended becomes a refund due, recorded
//! once; and following an order with the long-poll instead of polling.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use storefront_events::{
    Money,
    payments::{PaymentFailed, PaymentRefunded, PaymentSucceeded},
};

use crate::helpers::*;

fn usd(amount: i64) -> Money {
    Money {
        amount,
        currency: "USD".into(),
    }
}

fn paid(order: &Value, intent: &str) -> PaymentSucceeded {
    PaymentSucceeded {
        order_id: order["id"].as_str().unwrap().parse().unwrap(),
        user_id: order["user_id"].as_str().unwrap().parse().unwrap(),
        payment_intent_id: intent.into(),
        amount: usd(order["total"]["amount"].as_i64().unwrap()),
        succeeded_at: Utc::now(),
    }
}

async fn placed(shop: &Shop, who: &Customer, product: &str, quantity: i64) -> Value {
    let response = shop
        .place(
            who,
            json!([{ "product_id": product, "quantity": quantity }]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

#[tokio::test]
async fn payments_hold_waits_for_the_stock_and_a_cancel_waits_for_the_hold() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let order = placed(&shop, &ada, &mug, 2).await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(order["state"], "pending");

    // Asked at once: the hold waits for the reservation, then answers what to charge.
    let response = shop.hold(&ada.token, id, "10").await;
    assert_eq!(response.status(), StatusCode::OK);
    let held: Value = response.json().await.unwrap();
    assert_eq!(held["state"], "awaiting_payment");
    assert_eq!(
        held["subtotal"],
        json!({ "amount": 3600, "currency": "USD" })
    );
    assert_eq!(held["total"], order["total"]);
    assert!(held["paying_until"].is_string(), "{held}");
    // Holding is not a change anyone else replicates: the version stays.
    assert_eq!(held["version"], 2);

    // Stripe has it: the customer's cancel waits.
    let response = shop
        .orders(
            reqwest::Method::POST,
            &format!("/{id}/cancel"),
            Some(&ada.token),
            None,
        )
        .await;
    problem(response, StatusCode::CONFLICT, "payment-in-progress").await;
    assert_eq!(
        shop.order(&ada.token, id).await["state"],
        "awaiting_payment"
    );

    // The card was declined: the hold ends, and now the cancel goes through.
    let failed = PaymentFailed {
        order_id: id.parse().unwrap(),
        user_id: ada.id.into(),
        payment_intent_id: "pi_declined".into(),
        reason: "Your card was declined.".into(),
        attempt: 1,
        failed_at: Utc::now(),
    };
    shop.publish(id, 1, failed).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = shop
            .orders(
                reqwest::Method::POST,
                &format!("/{id}/cancel"),
                Some(&ada.token),
                None,
            )
            .await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "the hold never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A hold of a cancelled order is refused, with the reason.
    let body = problem(
        shop.hold(&ada.token, id, "1").await,
        StatusCode::CONFLICT,
        "order-not-payable",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("cancelled by the customer"),
        "{body}"
    );
}

/// A customer pays right after checkout: payments asks for the hold as the stock is being
/// reserved, so an ask may meet the order just as it leaves `pending`. Asked without waiting,
/// back to back, the answer is "still being reserved" until it is granted, never "payment window
/// expired" (which the read after the unmatched update once said there: 409 on a busy machine).
#[tokio::test]
async fn a_hold_asked_for_as_the_order_becomes_payable_is_granted() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 50).await;
    let ada = shop.customer();
    for _ in 0..5 {
        let order = placed(&shop, &ada, &mug, 1).await;
        let id = order["id"].as_str().unwrap().to_owned();
        let askers = (0..4).map(|_| async {
            let until = Instant::now() + Duration::from_secs(20);
            loop {
                let response = shop
                    .http
                    .post(format!(
                        "http://{}/internal/orders/{id}/payment-hold",
                        shop.orders
                    ))
                    .bearer_auth(&ada.token)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                if status == StatusCode::OK {
                    break;
                }
                assert_eq!(status, StatusCode::CONFLICT, "{body}");
                assert!(
                    body["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("still being reserved")),
                    "{body}"
                );
                assert!(Instant::now() < until, "never held: {body}");
            }
        });
        futures::future::join_all(askers).await;
    }
}

#[tokio::test]
async fn a_hold_is_only_for_the_owner_of_an_order_that_can_be_paid() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let (ada, eve) = (shop.customer(), shop.customer());
    let order = placed(&shop, &ada, &mug, 1).await;
    let id = order["id"].as_str().unwrap();
    shop.wait_state(&ada.token, id, "awaiting_payment").await;

    for (who, order) in [
        (&eve.token, id),
        (&ada.token, "not-an-id"),
        (&ada.token, &uuid::Uuid::new_v4().to_string()),
    ] {
        problem(
            shop.hold(who, order, "1").await,
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
    }
    for wait in ["0", "11", "-1"] {
        let body = problem(
            shop.hold(&ada.token, id, wait).await,
            if wait == "-1" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            if wait == "-1" {
                "malformed-request"
            } else {
                "validation"
            },
        )
        .await;
        if wait != "-1" {
            assert_eq!(body["errors"][0]["field"], "wait");
        }
    }
    let response = shop
        .http
        .post(format!(
            "http://{}/internal/orders/{id}/payment-hold?wait=1&amount=1",
            shop.orders
        ))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    let response = shop
        .http
        .post(format!(
            "http://{}/internal/orders/{id}/payment-hold",
            shop.orders
        ))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // Paid: the hold says so.
    shop.publish(id, 1, paid(&order, "pi_ok")).await;
    shop.wait_state(&ada.token, id, "completed").await;
    problem(
        shop.hold(&ada.token, id, "1").await,
        StatusCode::CONFLICT,
        "already-paid",
    )
    .await;
}

#[tokio::test]
async fn an_order_whose_stock_never_answers_is_not_held_and_money_for_it_goes_back() {
    let shop = shop_without_inventory().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let order = placed(&shop, &ada, &mug, 1).await;
    let id = order["id"].as_str().unwrap();
    let started = Instant::now();
    let body = problem(
        shop.hold(&ada.token, id, "1").await,
        StatusCode::CONFLICT,
        "order-not-payable",
    )
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert!(
        body["detail"].as_str().unwrap().contains("reserved"),
        "{body}"
    );

    // Money for it anyway (a bug elsewhere, a replay): it is not kept.
    shop.publish(id, 1, paid(&order, "pi_early")).await;
    let settled = shop.wait_state(&ada.token, id, "cancelled").await;
    assert_eq!(
        settled["reason"],
        storefront_orders::store::PAID_WHILE_PENDING
    );
    assert_eq!(settled["refund"]["status"], "due");
    assert_eq!(settled["version"], 3);
    let events = shop.order_events(id, 3).await;
    let kinds: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.version))
        .collect();
    assert_eq!(
        kinds,
        [
            ("order.created", 1),
            ("order.cancelled", 2),
            ("order.refund_due", 3)
        ]
    );
}

#[tokio::test]
async fn money_for_a_cancelled_order_becomes_one_refund_due_and_then_refunded() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let order = placed(&shop, &ada, &mug, 1).await;
    let id = order["id"].as_str().unwrap();
    shop.wait_state(&ada.token, id, "awaiting_payment").await;
    let response = shop
        .orders(
            reqwest::Method::POST,
            &format!("/{id}/cancel"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // The payment lands after the cancel, and is delivered twice.
    shop.publish(id, 1, paid(&order, "pi_late")).await;
    shop.publish(id, 1, paid(&order, "pi_late")).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let due = loop {
        let now = shop.order(&ada.token, id).await;
        if now["refund"]["status"] == "due" {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "never a refund due: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(due["state"], "cancelled");
    assert_eq!(due["refund"]["amount"], order["total"]);
    assert_eq!(due["payment"]["amount"], order["total"]);
    assert_eq!(due["version"], 4);

    // payments reports the refund done (twice).
    let refunded = PaymentRefunded {
        order_id: id.parse().unwrap(),
        user_id: ada.id.into(),
        payment_intent_id: "pi_late".into(),
        amount: usd(1800),
        refund_id: Some("re_1".into()),
        refunded_at: Utc::now(),
    };
    shop.publish(id, 2, refunded.clone()).await;
    shop.publish(id, 2, refunded).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = shop.order(&ada.token, id).await;
        if now["refund"]["status"] == "refunded" {
            assert!(now["refund"]["refunded_at"].is_string());
            break;
        }
        assert!(tokio::time::Instant::now() < until, "never refunded: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = shop.order_events(id, 5).await;
    let kinds: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.version))
        .collect();
    assert_eq!(
        kinds,
        [
            ("order.created", 1),
            ("order.awaiting_payment", 2),
            ("order.cancelled", 3),
            ("order.refund_due", 4),
            ("order.refunded", 5)
        ]
    );
    assert_eq!(events[3].data["payment_intent_id"], "pi_late");
    assert_eq!(shop.order(&ada.token, id).await["version"], 5);
}

#[tokio::test]
async fn the_expiry_waits_for_a_hold_to_end() {
    let shop = shop_with(|config| {
        config.payment_window = Duration::from_secs(1);
        config.payment_hold = Duration::from_secs(4);
    })
    .await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let order = placed(&shop, &ada, &mug, 1).await;
    let id = order["id"].as_str().unwrap();
    let held = shop.hold(&ada.token, id, "10").await;
    assert_eq!(held.status(), StatusCode::OK);
    let held: Value = held.json().await.unwrap();
    let expires: chrono::DateTime<Utc> = held["expires_at"].as_str().unwrap().parse().unwrap();
    // Well past its window (the expiry looks every 200 ms), it is still payable: Stripe has it.
    while Utc::now() < expires + chrono::Duration::milliseconds(1500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shop.order(&ada.token, id).await["state"],
        "awaiting_payment"
    );
    // The hold ends unanswered: now it expires.
    let expired = shop.wait_state(&ada.token, id, "cancelled").await;
    assert_eq!(expired["reason"], storefront_orders::expiry::REASON);
}

#[tokio::test]
async fn following_an_order_takes_one_request_per_change() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let (ada, eve) = (shop.customer(), shop.customer());
    let order = placed(&shop, &ada, &mug, 1).await;
    let id = order["id"].as_str().unwrap();

    // Version 1 known: the answer comes when the order moves, well before the wait is up.
    let started = Instant::now();
    let response = shop.follow(&ada.token, id, Some("\"1\""), "?wait=10").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let moved: Value = response.json().await.unwrap();
    assert_eq!(moved["state"], "awaiting_payment");
    assert!(started.elapsed() < Duration::from_secs(8));

    // Nothing changes for a second: 304, with the same tag.
    let started = Instant::now();
    let response = shop
        .follow(&ada.token, id, Some("W/\"2\""), "?wait=1")
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()["etag"], "\"2\"");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Without a wait it is a plain conditional GET; a tag of another version, or none, or a
    // malformed one, answers the order at once.
    let response = shop.follow(&ada.token, id, Some("\"2\""), "").await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    for tag in [Some("\"1\""), None, Some("two")] {
        let response = shop.follow(&ada.token, id, tag, "?wait=10").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["etag"], "\"2\"");
    }

    for (query, status, kind) in [
        ("?wait=0", StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ("?wait=11", StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ("?wait=soon", StatusCode::BAD_REQUEST, "malformed-request"),
        (
            "?until=completed",
            StatusCode::BAD_REQUEST,
            "malformed-request",
        ),
    ] {
        problem(
            shop.follow(&ada.token, id, Some("\"2\""), query).await,
            status,
            kind,
        )
        .await;
    }
    problem(
        shop.follow(&eve.token, id, Some("\"2\""), "?wait=1").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn an_order_above_what_one_payment_can_take_is_refused_before_anyone_pays() {
    let shop = shop().await;
    let safe = shop.product("Safe", 60_000_000, 5).await;
    let ada = shop.customer();
    let body = problem(
        shop.place(&ada, json!([{ "product_id": safe, "quantity": 2 }]))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "total");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("999999.99 USD"),
        "{body}"
    );
    // One is fine.
    let response = shop
        .place(&ada, json!([{ "product_id": safe, "quantity": 1 }]))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}
