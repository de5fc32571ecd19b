//! A lane of orders' consumer that is behind moves the orders of the steps waiting in it together
//! (`Store::advance_all_in`, one transaction): the orders, the answers and the events must be
//! those of the same steps one by one (`Store::advance`).

use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::{
    Database,
    bson::{Document, doc},
};
use storefront_events::{Money, OrderId, UserId};
use storefront_kit::{
    mongo::Mongo,
    outbox::Outbox,
    testing::{TestStack, unique},
};
use storefront_orders::{
    changes::Changes,
    domain::OrderState,
    store::{OrderDoc, Step, Store, StoreError, at},
};

struct Shop {
    store: Store,
    mongo: Mongo,
    outbox: Outbox,
}

async fn shop(stack: &TestStack) -> Shop {
    let mongo = Mongo::connect(&stack.mongo(&unique("orders_batch")), "test")
        .await
        .unwrap();
    let outbox = Outbox::new(&mongo.db, &unique("t"));
    let store = Store::new(
        mongo.clone(),
        outbox.clone(),
        Changes::new(Duration::from_secs(1)),
    );
    Shop {
        store,
        mongo,
        outbox,
    }
}

fn pending(id: OrderId, user: UserId) -> OrderDoc {
    let now = Utc::now();
    OrderDoc {
        id,
        user_id: user,
        lines: Vec::new(),
        total: usd(1500),
        state: OrderState::Pending,
        reason: None,
        number: None,
        version: 1,
        created_at: at(now),
        updated_at: at(now),
        expires_at: at(now + chrono::Duration::minutes(15)),
        idempotency_key: None,
        paying_until: None,
        payment: None,
        refund: None,
        pricing: None,
    }
}

fn usd(amount: i64) -> Money {
    Money {
        amount,
        currency: "USD".into(),
    }
}

fn paid(intent: &str) -> Step {
    Step::Paid {
        payment_intent_id: intent.into(),
        amount: usd(1500),
    }
}

/// What a step answered, without the times.
fn answer(moved: &Result<OrderDoc, StoreError>) -> String {
    match moved {
        Ok(order) => format!("{:?} v{}", order.state, order.version),
        Err(e) => format!("error: {e}"),
    }
}

/// An order as stored, without the times.
fn stored(order: &OrderDoc) -> String {
    format!(
        "{:?} v{} reason {:?} paid {:?} refund {:?} held {}",
        order.state,
        order.version,
        order.reason,
        order.payment.as_ref().map(|p| &p.payment_intent_id),
        order.refund.as_ref().map(|r| (r.status, &r.reason)),
        order.paying_until.is_some(),
    )
}

/// The events in `db`'s outbox, in order: type, key and version.
async fn events(db: &Database) -> Vec<String> {
    let records: Vec<Document> = db
        .collection::<Document>("outbox")
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    records
        .iter()
        .map(|r| {
            let payload: serde_json::Value =
                serde_json::from_str(r.get_str("payload").unwrap()).unwrap();
            format!(
                "{} {} v{}",
                r.get_str("type").unwrap(),
                r.get_str("key").unwrap(),
                payload["version"]
            )
        })
        .collect()
}

#[tokio::test]
async fn steps_moved_together_end_as_the_same_steps_one_by_one() {
    let stack = TestStack::from_env();
    let (one_by_one, together) = (shop(&stack).await, shop(&stack).await);
    let user = UserId::new();
    let o: Vec<OrderId> = (0..7).map(|_| OrderId::new()).collect();
    let unknown = OrderId::new();
    for shop in [&one_by_one, &together] {
        for &id in &o {
            shop.store.place(&pending(id, user), None).await.unwrap();
        }
        // o[5] payable and held by payments before the steps arrive.
        shop.store.advance(o[5], Step::Reserved).await.unwrap();
        let held = shop
            .store
            .hold_for_payment(o[5], user, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(held.is_ok(), "{held:?}");
    }
    let cancelled = |reason: &str| Step::Cancelled {
        reason: reason.into(),
    };
    let steps = vec![
        (o[0], Step::Reserved),
        (o[0], paid("pi_0")),   // completed
        (o[1], Step::Reserved), // awaiting payment
        (o[1], Step::Reserved), // not a step from there: ignored
        (o[2], cancelled("short")),
        (o[2], paid("pi_2")),         // paid after the cancel: a refund due
        (o[2], Step::Refunded),       // refunded
        (o[3], paid("pi_3")), // paid while pending: cancelled and a refund due, two versions
        (o[3], paid("pi_3")), // a replay: nothing
        (unknown, Step::Reserved), // no such order
        (o[5], cancelled("expired")), // held for payment: refused
        (o[5], paid("pi_5")), // the hold's payment: completed, the hold gone
        (o[0], Step::Refunded), // no refund to record
        (o[6], Step::Reserved),
    ];

    let mut answers_one = Vec::new();
    for (id, step) in steps.clone() {
        answers_one.push(answer(&one_by_one.store.advance(id, step).await));
    }
    let mut session = together.mongo.begin().await.unwrap();
    let answers_together = together
        .store
        .advance_all_in(&mut session, steps)
        .await
        .unwrap();
    together.outbox.commit(session).await.unwrap();
    let answers_together: Vec<String> = answers_together.iter().map(answer).collect();

    assert_eq!(answers_together, answers_one);
    assert_eq!(
        answers_one,
        [
            "AwaitingPayment v2",
            "Completed v3",
            "AwaitingPayment v2",
            "error: an order that is awaiting_payment cannot be reserved",
            "Cancelled v2",
            "Cancelled v3",
            "Cancelled v4",
            "Cancelled v3",
            "Cancelled v3",
            "error: no such order",
            "error: the order is being paid right now; try again in a minute if the payment fails",
            "Completed v3",
            "error: an order that is completed cannot be refunded",
            "AwaitingPayment v2",
        ]
        .map(String::from)
    );
    for &id in &o {
        let (a, b) = (
            one_by_one.store.get(id).await.unwrap().unwrap(),
            together.store.get(id).await.unwrap().unwrap(),
        );
        assert_eq!(stored(&b), stored(&a), "order {id}");
    }
    let o2 = together.store.get(o[2]).await.unwrap().unwrap();
    assert!(
        o2.refund
            .is_some_and(|r| r.reason.contains("after the order had ended"))
    );
    let o5 = together.store.get(o[5]).await.unwrap().unwrap();
    assert!(o5.paying_until.is_none(), "the payment ended the hold");
    let (events_one, events_together) = (
        events(&one_by_one.mongo.db).await,
        events(&together.mongo.db).await,
    );
    assert_eq!(events_together, events_one);
    // 7 placed, o[5]'s reservation before, then 10 versions from the steps.
    assert_eq!(events_one.len(), 7 + 1 + 10, "{events_one:#?}");
}
