//! What orders reads back from its database is checked: an order whose stored ids are not
//! UUIDs is an error, never an order of the nil UUID.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use storefront_events::{OrderId, UserId};
use storefront_kit::{
    mongo::Mongo,
    outbox::Outbox,
    testing::{TestStack, unique},
};
use storefront_orders::{changes::Changes, store::Store};

async fn store_with(stored: Document) -> Store {
    let stack = TestStack::from_env();
    let mongo = Mongo::connect(&stack.mongo(&unique("orders_stored")), "test")
        .await
        .unwrap();
    mongo
        .db
        .collection::<Document>("orders")
        .insert_one(stored)
        .await
        .unwrap();
    Store::new(
        mongo.clone(),
        Outbox::new(&mongo.db, &unique("t")),
        Changes::new(Duration::from_secs(1)),
    )
}

fn order(id: &str, user_id: &str) -> Document {
    let now = mongodb::bson::DateTime::now();
    doc! {
        "_id": id,
        "user_id": user_id,
        "lines": [],
        "total": { "amount": 100_i64, "currency": "USD" },
        "state": "pending",
        "version": 1_i64,
        "created_at": now,
        "updated_at": now,
        "expires_at": now,
    }
}

#[tokio::test]
async fn a_stored_order_reads_back_with_its_typed_ids() {
    let (id, user) = (OrderId::new(), UserId::new());
    let store = store_with(order(&id.to_string(), &user.to_string())).await;
    let found = store.get(id).await.unwrap().expect("the order");
    assert_eq!((found.id, found.user_id), (id, user));
    let mine = store.list(Some(user), None, 1, 10).await.unwrap();
    assert_eq!(mine.items.len(), 1);
}

#[tokio::test]
async fn a_stored_id_that_is_not_a_uuid_is_an_error_not_the_nil_uuid() {
    let user = UserId::new();
    let store = store_with(order("not-a-uuid", &user.to_string())).await;
    let Err(err) = store.list(None, None, 1, 10).await else {
        panic!("a corrupt order must not read as one");
    };
    assert!(err.to_string().contains("not a UUID"), "{err}");

    let id = OrderId::new();
    let store = store_with(order(&id.to_string(), "someone")).await;
    let err = store.get(id).await.expect_err("a corrupt owner");
    assert!(err.to_string().contains("user id \"someone\""), "{err}");
}
