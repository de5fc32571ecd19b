//! The writes cart's consumer makes to a cart, against the real MongoDB.

use storefront_cart::store::{Checkout, Item, OrderEnd, Store};
use storefront_events::{OrderId, ProductId, UserId};
use storefront_kit::{
    mongo::Mongo,
    testing::{TestStack, unique},
};

async fn store() -> Store {
    let stack = TestStack::from_env();
    let mongo = Mongo::connect(&stack.mongo(&unique("cartstore")), "test")
        .await
        .unwrap();
    Store::new(&mongo.db)
}

/// The one product these tests hold.
const MUG: ProductId = ProductId::from_uuid(uuid::Uuid::from_u128(0x6d_7567));

fn mug(quantity: i64) -> Item {
    Item {
        product_id: MUG,
        quantity,
    }
}

/// A cart holding `items` and a checkout (key `key-1`) of two mugs for `order`, if it knows it.
async fn hold(store: &Store, user: UserId, items: &[Item], order: Option<OrderId>) {
    store
        .update(user, |cart| {
            cart.items.extend_from_slice(items);
            cart.checkouts.push(Checkout {
                key: "key-1".into(),
                order_id: order,
                items: vec![mug(2)],
                held_at: mongodb::bson::DateTime::now(),
            });
            Ok::<_, mongodb::error::Error>(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_hold_learns_its_order_from_the_event_and_goes_when_the_order_is_bought() {
    let store = store().await;
    let user = UserId::new();
    // A checkout whose answer from orders was lost: its hold never learned the order.
    hold(&store, user, &[], None).await;
    let order = OrderId::new();

    assert!(
        !store.placed(user, "another-key", order).await.unwrap(),
        "no hold has that key"
    );
    assert!(store.placed(user, "key-1", order).await.unwrap());
    let cart = store.cart(user).await.unwrap();
    assert_eq!(cart.checkouts[0].order_id, Some(order));
    assert_eq!(cart.checkouts[0].items.len(), 1, "the lines stay held");
    assert_eq!(cart.version, 2, "the version rises with the write");

    // Told again (a redelivery): the hold knows its order already.
    assert!(!store.placed(user, "key-1", order).await.unwrap());

    assert!(store.ended(user, order, OrderEnd::Completed).await.unwrap());
    let cart = store.cart(user).await.unwrap();
    assert!(cart.checkouts.is_empty(), "bought lines are no longer held");
    assert!(cart.items.is_empty(), "and do not go back into the cart");
    assert_eq!(cart.version, 3);

    assert!(
        !store.ended(user, order, OrderEnd::Completed).await.unwrap(),
        "a second completion finds nothing to end"
    );
}

#[tokio::test]
async fn a_cancelled_order_puts_its_held_lines_back_once() {
    let store = store().await;
    let user = UserId::new();
    let order = OrderId::new();
    hold(&store, user, &[mug(1)], Some(order)).await;

    assert!(store.ended(user, order, OrderEnd::Cancelled).await.unwrap());
    let cart = store.cart(user).await.unwrap();
    assert!(cart.checkouts.is_empty());
    assert_eq!(
        cart.items,
        vec![mug(3)],
        "the held lines are back, added to what the cart had"
    );

    // A redelivery of the cancellation finds no hold: nothing is put back twice.
    assert!(!store.ended(user, order, OrderEnd::Cancelled).await.unwrap());
    assert_eq!(store.cart(user).await.unwrap().items[0].quantity, 3);
    // Nor does a cancellation for a customer without a cart make one.
    assert!(
        !store
            .ended(UserId::new(), order, OrderEnd::Cancelled)
            .await
            .unwrap()
    );
}
