//! The saga between orders and products: reserved → awaiting payment → completed, rejected,
//! cancelled by the owner, expired; replays and stale product events change nothing.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::json;
use storefront_events::{
    Money,
    payments::PaymentSucceeded,
    products::{ProductSnapshot, ProductUpdated, Stock},
};
use uuid::Uuid;

use crate::helpers::*;

fn paid(order: &serde_json::Value) -> PaymentSucceeded {
    PaymentSucceeded {
        order_id: order["id"].as_str().unwrap().parse().unwrap(),
        user_id: order["user_id"].as_str().unwrap().parse().unwrap(),
        payment_intent_id: "pi_test".into(),
        amount: Money {
            amount: order["total"]["amount"].as_i64().unwrap(),
            currency: "USD".into(),
        },
        succeeded_at: Utc::now(),
    }
}

#[tokio::test]
async fn an_order_is_reserved_paid_and_completed() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let response = shop
        .place(&ada, json!([{ "product_id": mug, "quantity": 2 }]))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: serde_json::Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["state"], "pending");
    assert_eq!(
        order["subtotal"],
        json!({ "amount": 3600, "currency": "USD" })
    );
    // The total is the items and what the pricing function adds (tests/api/pricing.rs).
    let charges: i64 = order["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"]["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(order["total"]["amount"], 3600 + charges);
    assert_eq!(order["lines"][0]["title"], "Mug");
    assert_eq!(order["lines"][0]["line_total"]["amount"], 3600);

    shop.wait_state(&ada.token, &id, "awaiting_payment").await;
    assert_eq!(shop.stock(&mug).await, (3, 2, 0));

    let order = shop.order(&ada.token, &id).await;
    shop.publish(&id, 1, paid(&order)).await;
    let done = shop.wait_state(&ada.token, &id, "completed").await;
    assert_eq!(done["version"], 3);
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while shop.stock(&mug).await != (3, 0, 2) {
        assert!(
            tokio::time::Instant::now() < until,
            "the reservation was never sold"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Paid: too late to cancel, and a replayed payment changes nothing.
    let response = shop
        .orders(
            Method::POST,
            &format!("/{id}/cancel"),
            Some(&ada.token),
            None,
        )
        .await;
    let body = problem(response, StatusCode::CONFLICT, "order-state").await;
    assert!(body["detail"].as_str().unwrap().contains("completed"));
    shop.publish(&id, 1, paid(&order)).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(shop.order(&ada.token, &id).await["version"], 3);
}

#[tokio::test]
async fn out_of_stock_cancels_the_order_with_the_reason() {
    let shop = shop().await;
    let (mug, lamp) = (
        shop.product("Mug", 1800, 5).await,
        shop.product("Lamp", 7900, 1).await,
    );
    let ada = shop.customer();
    let response = shop
        .place(
            &ada,
            json!([{ "product_id": mug, "quantity": 1 }, { "product_id": lamp, "quantity": 2 }]),
        )
        .await;
    let order: serde_json::Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    let cancelled = shop.wait_state(&ada.token, id, "cancelled").await;
    assert_eq!(cancelled["reason"], "not enough stock for 1 item");
    assert_eq!(shop.stock(&mug).await, (5, 0, 0));
    assert_eq!(shop.stock(&lamp).await, (1, 0, 0));
}

#[tokio::test]
async fn the_owner_cancels_before_payment_and_the_stock_comes_back() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let ada = shop.customer();
    let order: serde_json::Value = shop
        .place(&ada, json!([{ "product_id": mug, "quantity": 3 }]))
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    shop.wait_state(&ada.token, id, "awaiting_payment").await;

    // Someone else cannot, and cannot even tell the order exists.
    let eve = shop.customer();
    let response = shop
        .orders(
            Method::POST,
            &format!("/{id}/cancel"),
            Some(&eve.token),
            None,
        )
        .await;
    problem(response, StatusCode::NOT_FOUND, "not-found").await;

    let response = shop
        .orders(
            Method::POST,
            &format!("/{id}/cancel"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (cancelled["state"].as_str(), cancelled["reason"].as_str()),
        (Some("cancelled"), Some("cancelled by the customer"))
    );
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while shop.stock(&mug).await != (5, 0, 0) {
        assert!(
            tokio::time::Instant::now() < until,
            "the stock was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let response = shop
        .orders(
            Method::POST,
            &format!("/{id}/cancel"),
            Some(&ada.token),
            None,
        )
        .await;
    problem(response, StatusCode::CONFLICT, "order-state").await;
}

#[tokio::test]
async fn unpaid_orders_expire_and_release_their_stock() {
    let shop = shop_with(|config| config.payment_window = std::time::Duration::from_secs(2)).await;
    let mug = shop.product("Mug", 1800, 4).await;
    let ada = shop.customer();
    let order: serde_json::Value = shop
        .place(&ada, json!([{ "product_id": mug, "quantity": 4 }]))
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    let expired = shop.wait_state(&ada.token, id, "cancelled").await;
    assert_eq!(expired["reason"], storefront_orders::expiry::REASON);
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while shop.stock(&mug).await != (4, 0, 0) {
        assert!(
            tokio::time::Instant::now() < until,
            "the stock was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_product_replica_never_moves_backwards() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 5).await;
    let response = shop
        .http
        .patch(format!("http://{}/api/products/{mug}", shop.products))
        .bearer_auth(&shop.admin)
        .header("if-match", "\"v1\"")
        .json(&json!({ "price": { "amount": 2500, "currency": "USD" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    shop.wait_replica(&mug, 2).await;

    // A stale snapshot (version 1, the old price) arrives again: ignored.
    let now = Utc::now();
    let stale = ProductUpdated {
        product: ProductSnapshot {
            product_id: mug.parse::<Uuid>().unwrap().into(),
            title: "Mug".into(),
            description: String::new(),
            category: "kitchen".into(),
            price: Money {
                amount: 1,
                currency: "USD".into(),
            },
            images: Vec::new(),
            stock: Stock {
                available: 99,
                reserved: 0,
                sold: 0,
            },
            deleted: false,
            created_at: now,
            updated_at: now,
        },
    };
    shop.publish(&mug, 1, stale).await;
    // Then a real change behind it, so the stale one has surely been handled. (A stock change
    // would not do: orders' replica does not follow stock.)
    let response = shop
        .http
        .patch(format!("http://{}/api/products/{mug}", shop.products))
        .bearer_auth(&shop.admin)
        .header("if-match", "\"v2\"")
        .json(&json!({ "title": "Big mug" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    shop.wait_replica(&mug, 3).await;
    let replica = &shop.store.products(&[mug.parse().unwrap()]).await.unwrap()[0];
    assert_eq!(
        (
            replica.price.amount,
            replica.title.as_str(),
            replica.version
        ),
        (2500, "Big mug", 3)
    );

    // Orders are priced from the replica: the new price, whatever the client thinks.
    let ada = shop.customer();
    let order: serde_json::Value = shop
        .place(&ada, json!([{ "product_id": mug, "quantity": 1 }]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["subtotal"]["amount"], 2500);
}

#[tokio::test]
async fn orders_replica_takes_snapshots_and_a_deletion_over_gaps_and_never_reads_stock() {
    let shop = shop().await;
    let id = Uuid::new_v4();
    let now = Utc::now();
    let snapshot = |version_title: &str, available| ProductUpdated {
        product: ProductSnapshot {
            product_id: id.into(),
            title: version_title.into(),
            description: String::new(),
            category: "kitchen".into(),
            price: Money {
                amount: 700,
                currency: "USD".into(),
            },
            images: Vec::new(),
            stock: Stock {
                available,
                reserved: 0,
                sold: 0,
            },
            deleted: false,
            created_at: now,
            updated_at: now,
        },
    };
    // A replica that never saw versions 1-4 (a resync after the broker lost them) takes v5 whole.
    shop.publish(&id.to_string(), 5, snapshot("Teapot", 3))
        .await;
    shop.wait_replica(&id.to_string(), 5).await;
    // Stock changes (v6, v7) are not for orders; the deletion behind them (v8) applies over them.
    let stock = |available| storefront_events::products::StockChanged {
        product_id: id.into(),
        movement: storefront_events::products::StockMovement::Adjusted,
        delta: 1,
        stock: Stock {
            available,
            reserved: 0,
            sold: 0,
        },
        order_id: None,
        reason: Some("recount".into()),
    };
    shop.publish(&id.to_string(), 6, stock(4)).await;
    shop.publish(&id.to_string(), 7, stock(9)).await;
    shop.publish(
        &id.to_string(),
        8,
        storefront_events::products::ProductDeleted {
            product_id: id.into(),
            deleted_at: now,
        },
    )
    .await;
    shop.wait_replica(&id.to_string(), 8).await;
    let replica = &shop.store.products(&[id.into()]).await.unwrap()[0];
    assert_eq!(
        (
            replica.title.as_str(),
            replica.available,
            replica.deleted,
            replica.version
        ),
        ("Teapot", 3, true, 8),
        "the snapshot's figure stays; the deletion applied"
    );
}

/// The dashboard's sales: today's orders by state, the completed one's total as revenue, and
/// what it sold; an open or cancelled order sells nothing.
#[tokio::test]
async fn the_sales_figures_count_orders_by_state_and_only_completed_ones_earn() {
    let shop = shop().await;
    let mug = shop.product("Mug", 1800, 10).await;
    let tea = shop.product("Tea", 500, 10).await;
    let ada = shop.customer();
    let mut ids = Vec::new();
    for lines in [
        json!([{ "product_id": mug, "quantity": 2 }, { "product_id": tea, "quantity": 1 }]),
        json!([{ "product_id": tea, "quantity": 3 }]),
        json!([{ "product_id": mug, "quantity": 1 }]),
    ] {
        let response = shop.place(&ada, lines).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: serde_json::Value = response.json().await.unwrap();
        let id = order["id"].as_str().unwrap().to_owned();
        shop.wait_state(&ada.token, &id, "awaiting_payment").await;
        ids.push(id);
    }
    let first = shop.order(&ada.token, &ids[0]).await;
    shop.publish(&ids[0], 1, paid(&first)).await;
    let completed = shop.wait_state(&ada.token, &ids[0], "completed").await;
    let cancel = shop
        .orders(
            Method::POST,
            &format!("/{}/cancel", ids[1]),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::OK);

    let admin = shop.mint(Uuid::new_v4(), storefront_kit::auth::Role::Admin);
    let response = shop
        .orders(Method::GET, "/admin/stats?days=7", Some(&admin), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let stats: serde_json::Value = response.json().await.unwrap();
    assert_eq!(stats["days"].as_array().unwrap().len(), 7);
    let today = Utc::now().date_naive().to_string();
    assert_eq!(stats["days"][6]["day"], stats["until"]);
    // (Unless the test crossed midnight, UTC.)
    assert!(
        stats["until"] == today || stats["days"][5]["day"] == today,
        "{stats}"
    );
    assert_eq!(
        (&stats["placed"], &stats["completed"], &stats["cancelled"]),
        (&json!(3), &json!(1), &json!(1)),
        "{stats}"
    );
    assert_eq!(stats["revenue"], json!([completed["total"]]));
    let placed: i64 = stats["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["placed"].as_i64().unwrap())
        .sum();
    assert_eq!(placed, 3, "by day as in all");
    let sold: Vec<(&str, i64, i64)> = stats["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["title"].as_str().unwrap(),
                p["units"].as_i64().unwrap(),
                p["revenue"]["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sold, vec![("Mug", 2, 3600), ("Tea", 1, 500)], "{stats}");
}

/// Only an admin reads the sales, and only for a window of 1 to 90 days.
#[tokio::test]
async fn the_sales_figures_refuse_customers_and_bad_windows() {
    let shop = shop_without_inventory().await;
    let ada = shop.customer();
    let response = shop.orders(Method::GET, "/admin/stats", None, None).await;
    problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let response = shop
        .orders(Method::GET, "/admin/stats", Some(&ada.token), None)
        .await;
    problem(response, StatusCode::FORBIDDEN, "admin-only").await;
    let admin = shop.mint(Uuid::new_v4(), storefront_kit::auth::Role::Admin);
    for days in ["0", "91", "-1", "seven", "1.5"] {
        let response = shop
            .orders(
                Method::GET,
                &format!("/admin/stats?days={days}"),
                Some(&admin),
                None,
            )
            .await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(body["errors"][0]["field"], "days", "{days}: {body}");
    }
    let response = shop
        .orders(
            Method::GET,
            "/admin/stats?since=2026-01-01",
            Some(&admin),
            None,
        )
        .await;
    problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    let response = shop
        .orders(Method::GET, "/admin/stats", Some(&admin), None)
        .await;
    let stats: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        stats["days"].as_array().unwrap().len(),
        30,
        "30 days by default"
    );
    assert_eq!(stats["placed"], 0);
    assert_eq!(stats["revenue"], json!([]));
}
