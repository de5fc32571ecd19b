//! The inventory side of the saga: all lines or none, never below zero under concurrency, and
//! handlers that ignore redelivery, replays and out-of-order events.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use storefront_events::{
    Money, Topic,
    orders::{OrderCancelled, OrderCompleted, OrderCreated, OrderLine},
    products::LineQuantity,
};
use storefront_kit::kafka;
use storefront_kit::kafka::KafkaProducer;
use storefront_products::{
    app::inventory,
    domain::InventoryOp,
    store::{Reservation, ReservationState},
};
use uuid::Uuid;

use crate::helpers::*;

async fn stock(app: &TestApp, id: Uuid) -> (i64, i64, i64) {
    let response = app
        .send(
            reqwest::Method::GET,
            &format!("/{id}/stock"),
            Some(&app.admin),
            None,
            None,
        )
        .await;
    let view: Value = response.json().await.unwrap();
    let s = &view["stock"];
    (
        s["available"].as_i64().unwrap(),
        s["reserved"].as_i64().unwrap(),
        s["sold"].as_i64().unwrap(),
    )
}

async fn new_product(app: &TestApp, stock: i64) -> Uuid {
    let product = app.product("Mug", "kitchen", 1800, stock).await;
    product["id"].as_str().unwrap().parse().unwrap()
}

fn line(product_id: Uuid, quantity: i64) -> LineQuantity {
    LineQuantity {
        product_id: product_id.into(),
        quantity,
    }
}

#[tokio::test]
async fn fifty_buyers_race_for_ten_items_and_ten_win() {
    let app = spawn_app().await;
    let product = new_product(&app, 10).await;
    let buyers: Vec<_> = (0..50)
        .map(|_| {
            let store = app.store().clone();
            tokio::spawn(async move {
                store
                    .reserve(Uuid::new_v4().into(), &[line(product, 1)])
                    .await
            })
        })
        .collect();
    let mut reserved = 0;
    for buyer in buyers {
        match buyer
            .await
            .unwrap()
            .expect("a reservation answers, never errors")
        {
            Reservation::Reserved => reserved += 1,
            Reservation::Rejected(short) => assert_eq!(short[0].requested, 1),
            Reservation::Unchanged => panic!("every order is new"),
        }
    }
    assert_eq!(reserved, 10);
    assert_eq!(stock(&app, product).await, (0, 10, 0));
}

#[tokio::test]
async fn an_order_is_held_whole_or_not_at_all() {
    let app = spawn_app().await;
    let (plenty, scarce) = (new_product(&app, 5).await, new_product(&app, 1).await);
    let mut lines = vec![line(plenty, 2), line(scarce, 2)];
    lines.sort_by_key(|l| l.product_id);
    let order = Uuid::new_v4();
    match app.store().reserve(order.into(), &lines).await.unwrap() {
        Reservation::Rejected(short) => {
            assert_eq!(short.len(), 1);
            assert_eq!(
                (short[0].product_id, short[0].requested, short[0].available),
                (storefront_events::ProductId::from(scarce), 2, 1)
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(stock(&app, plenty).await, (5, 0, 0));
    assert_eq!(stock(&app, scarce).await, (1, 0, 0));
    // Asking again about the same order changes nothing.
    assert_eq!(
        app.store()
            .reserve(order.into(), &[line(plenty, 1)])
            .await
            .unwrap(),
        Reservation::Unchanged
    );
    assert_eq!(stock(&app, plenty).await, (5, 0, 0));
}

/// Publishes `data` as an event on its topic for this app's shop; returns the envelope's id.
async fn wait_for(app: &TestApp, order: Uuid, state: ReservationState) {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if app.store().reservation_state(order.into()).await.unwrap() == Some(state) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "order {order} never reached {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn created(order: Uuid, lines: &[(Uuid, i64)]) -> OrderCreated {
    let usd = |amount| Money {
        amount,
        currency: "USD".into(),
    };
    OrderCreated {
        order_id: order.into(),
        user_id: Uuid::new_v4().into(),
        lines: lines
            .iter()
            .map(|(product_id, quantity)| OrderLine {
                product_id: (*product_id).into(),
                title: "Mug".into(),
                unit_price: usd(1800),
                quantity: *quantity,
            })
            .collect(),
        charges: Vec::new(),
        total: usd(1800 * lines.iter().map(|l| l.1).sum::<i64>()),
        created_at: Utc::now(),
        idempotency_key: None,
    }
}

fn cancelled(order: Uuid) -> OrderCancelled {
    OrderCancelled {
        order_id: order.into(),
        user_id: Uuid::new_v4().into(),
        reason: "expired".into(),
        cancelled_at: Utc::now(),
    }
}

/// orders completed the order (it was paid and orders kept the money).
fn paid(order: Uuid) -> OrderCompleted {
    OrderCompleted {
        order_id: order.into(),
        user_id: Uuid::new_v4().into(),
        charges: Vec::new(),
        total: Money {
            amount: 1800,
            currency: "USD".into(),
        },
        completed_at: Utc::now(),
    }
}

#[tokio::test]
async fn the_saga_events_reserve_release_and_sell_once_each() {
    let app = consuming_app().await;
    let product = new_product(&app, 10).await;
    let producer: KafkaProducer = kafka::producer(&app.config.common.kafka).unwrap();

    // Reserved once, though delivered twice and replayed under a new event id.
    let order = Uuid::new_v4();
    let event = publish(
        &app,
        order,
        1,
        created(order, &[(product, 3), (product, 1)]),
    )
    .await;
    send(&app, &producer, Topic::Orders, &event).await;
    wait_for(&app, order, ReservationState::Reserved).await;
    publish(&app, order, 1, created(order, &[(product, 4)])).await;
    // Released once, though delivered twice.
    let event = publish(&app, order, 2, cancelled(order)).await;
    send(&app, &producer, Topic::Orders, &event).await;
    wait_for(&app, order, ReservationState::Released).await;

    // Another order: reserved, then paid (twice) → sold; a late cancel changes nothing.
    let sold = Uuid::new_v4();
    publish(&app, sold, 1, created(sold, &[(product, 2)])).await;
    wait_for(&app, sold, ReservationState::Reserved).await;
    let event = publish(&app, sold, 2, paid(sold)).await;
    send(&app, &producer, Topic::Orders, &event).await;
    wait_for(&app, sold, ReservationState::Sold).await;
    publish(&app, sold, 3, cancelled(sold)).await;

    // Too many: rejected, nothing held.
    let greedy = Uuid::new_v4();
    publish(&app, greedy, 1, created(greedy, &[(product, 9)])).await;
    wait_for(&app, greedy, ReservationState::Rejected).await;

    // A marker order behind everything above on the orders topic, so they have all been handled.
    let marker = Uuid::new_v4();
    publish(&app, marker, 1, created(marker, &[(product, 1)])).await;
    wait_for(&app, marker, ReservationState::Reserved).await;
    assert_eq!(stock(&app, product).await, (7, 1, 2));

    // The saga's answers went out on the products topic, one per order.
    let topic = Topic::Products.name(&app.config.common.kafka.topic_prefix);
    let events = storefront_kit::testing::consume(&app.stack.kafka_bootstrap, &topic, 10).await;
    let answers: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.event_type.starts_with("inventory."))
        .map(|e| (e.event_type.as_str(), e.key.as_str()))
        .collect();
    let (order, sold, greedy, marker) = (
        order.to_string(),
        sold.to_string(),
        greedy.to_string(),
        marker.to_string(),
    );
    assert_eq!(
        answers,
        [
            ("inventory.reserved", order.as_str()),
            ("inventory.reserved", sold.as_str()),
            ("inventory.rejected", greedy.as_str()),
            ("inventory.reserved", marker.as_str()),
        ]
    );
    let rejected = events
        .iter()
        .find(|e| e.event_type == "inventory.rejected")
        .unwrap();
    assert_eq!(rejected.data["short"][0]["requested"], 9);
    // Stock versions form one sequence per product: created, then one per movement.
    let versions: Vec<u64> = events
        .iter()
        .filter(|e| e.key == product.to_string())
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    let _ = app.stop.send(true);
}

#[tokio::test]
async fn events_out_of_order_still_end_right() {
    let app = consuming_app().await;
    let product = new_product(&app, 5).await;

    // Cancelled before it was created (on another topic partition, a replay, …): never held.
    let cancelled_first = Uuid::new_v4();
    publish(&app, cancelled_first, 2, cancelled(cancelled_first)).await;
    wait_for(&app, cancelled_first, ReservationState::CancelledFirst).await;
    publish(
        &app,
        cancelled_first,
        1,
        created(cancelled_first, &[(product, 2)]),
    )
    .await;

    // Paid before the order arrived: sold as soon as it does.
    let paid_first = Uuid::new_v4();
    publish(&app, paid_first, 1, paid(paid_first)).await;
    wait_for(&app, paid_first, ReservationState::PaidFirst).await;
    publish(&app, paid_first, 1, created(paid_first, &[(product, 1)])).await;
    wait_for(&app, paid_first, ReservationState::Sold).await;

    // An order with nothing valid in it is rejected, not retried for ever.
    let empty = Uuid::new_v4();
    publish(&app, empty, 1, created(empty, &[(product, 0)])).await;
    wait_for(&app, empty, ReservationState::Rejected).await;

    assert_eq!(
        app.store()
            .reservation_state(cancelled_first.into())
            .await
            .unwrap(),
        Some(ReservationState::CancelledFirst)
    );
    assert_eq!(stock(&app, product).await, (4, 0, 1));
    let _ = app.stop.send(true);
}

/// The saga's events of one scenario, over three products and eleven orders: applied one by one
/// to one set of products, and in one batch (what the consumer does when it is behind) to
/// another, they end in the same stock, reservations and ledger.
#[tokio::test]
async fn a_batch_of_saga_events_ends_as_the_same_events_one_by_one() {
    let app = spawn_app().await;
    let stocks = [5, 3, 5];
    let mut sets = Vec::new();
    for _ in 0..2 {
        let mut products = Vec::new();
        for stock in stocks {
            products.push(new_product(&app, stock).await);
        }
        let orders: Vec<Uuid> = (0..11).map(|_| Uuid::new_v4()).collect();
        sets.push((products, orders));
    }
    let reserve = |order: Uuid, lines: &[(Uuid, i64)]| InventoryOp::Reserve {
        order_id: order.into(),
        lines: lines.iter().map(|&(p, q)| line(p, q)).collect(),
    };
    let release = |order_id| InventoryOp::Release { order_id };
    let sell = |order_id| InventoryOp::Sell { order_id };
    // Applied one by one to both sets first: reservations the batch finds stored.
    let before = |p: &[Uuid], o: &[Uuid]| vec![reserve(o[9], &[(p[1], 1)]), sell(o[10].into())];
    let scenario = |p: &[Uuid], o: &[Uuid]| {
        vec![
            reserve(o[0], &[(p[0], 2), (p[1], 1)]),
            reserve(o[1], &[(p[1], 3)]), // short: 1 left
            sell(o[0].into()),
            reserve(o[2], &[(p[2], 1)]),
            release(o[2].into()),
            release(o[3].into()), // cancelled first: never held
            reserve(o[3], &[(p[0], 1)]),
            sell(o[4].into()), // paid first: sold at once
            reserve(o[4], &[(p[0], 1)]),
            reserve(o[5], &[(p[0], 1)]),
            reserve(o[5], &[(p[0], 1)]), // redelivered
            sell(o[5].into()),
            sell(o[5].into()),
            release(o[5].into()), // after the sale: nothing
            reserve(o[6], &[]),
            sell(o[9].into()),            // reserved before the batch
            reserve(o[10], &[(p[2], 1)]), // paid before the batch
            reserve(o[7], &[(p[2], 4)]),
            reserve(o[8], &[(p[2], 1)]), // short: none left
        ]
    };
    for (products, orders) in &sets {
        for op in before(products, orders) {
            inventory::apply(app.store(), &op).await.unwrap();
        }
    }
    let (one_by_one, batched) = (&sets[0], &sets[1]);
    for op in scenario(&one_by_one.0, &one_by_one.1) {
        inventory::apply(app.store(), &op).await.unwrap();
    }
    app.store()
        .apply_all(&scenario(&batched.0, &batched.1))
        .await
        .unwrap();

    let expected_stock = [(1, 0, 4), (1, 0, 2), (0, 4, 1)];
    for (i, expected) in expected_stock.into_iter().enumerate() {
        assert_eq!(
            stock(&app, one_by_one.0[i]).await,
            expected,
            "product {i} one by one"
        );
        assert_eq!(
            stock(&app, batched.0[i]).await,
            expected,
            "product {i} batched"
        );
        let movements = |entries: Vec<storefront_products::store::LedgerEntry>| {
            entries
                .into_iter()
                .map(|e| (e.movement, e.delta, e.stock, e.version))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            movements(
                app.store()
                    .ledger(one_by_one.0[i].into(), 100)
                    .await
                    .unwrap()
            ),
            movements(app.store().ledger(batched.0[i].into(), 100).await.unwrap()),
            "product {i}'s ledger"
        );
    }
    use ReservationState::*;
    let expected_states = [
        Sold,
        Rejected,
        Released,
        CancelledFirst,
        Sold,
        Sold,
        Rejected,
        Reserved,
        Rejected,
        Sold,
        Sold,
    ];
    for (j, expected) in expected_states.into_iter().enumerate() {
        for (name, (_, orders)) in [("one by one", one_by_one), ("batched", batched)] {
            assert_eq!(
                app.store()
                    .reservation_state(orders[j].into())
                    .await
                    .unwrap(),
                Some(expected),
                "order {j} {name}"
            );
        }
    }
}
