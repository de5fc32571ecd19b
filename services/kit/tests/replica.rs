//! The product replica's writes without a transaction, on real MongoDB: each applies once, in
//! version order; replays change nothing; a gap is refused.

use storefront_events::{
    Envelope, Money,
    products::{
        ProductCreated, ProductDeleted, ProductSnapshot, ProductUpdated, Stock, StockChanged,
        StockMovement,
    },
};
use storefront_kit::{
    mongo::Mongo,
    replica::Products,
    testing::{TestStack, unique},
};
use uuid::Uuid;

fn snapshot(id: Uuid, title: &str, available: i64) -> ProductSnapshot {
    ProductSnapshot {
        product_id: id.into(),
        title: title.into(),
        description: String::new(),
        category: "kitchen".into(),
        price: Money {
            amount: 1800,
            currency: "USD".into(),
        },
        images: Vec::new(),
        stock: Stock {
            available,
            reserved: 0,
            sold: 0,
        },
        deleted: false,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}

fn stock(id: Uuid, version: u64, available: i64) -> Envelope {
    let data = StockChanged {
        product_id: id.into(),
        movement: StockMovement::Reserved,
        delta: -1,
        stock: Stock {
            available,
            reserved: 0,
            sold: 0,
        },
        order_id: None,
        reason: None,
    };
    Envelope::new("products", id.to_string(), version, data)
        .into_raw()
        .unwrap()
}

#[tokio::test]
async fn replica_events_apply_once_in_version_order_without_a_transaction() {
    let stack = TestStack::from_env();
    let mongo = Mongo::connect(&stack.mongo(&unique("replica")), "test")
        .await
        .unwrap();
    let products = Products::new(&mongo.db);
    let id = Uuid::new_v4();
    let get = || async { products.get(&[id.into()]).await.unwrap().pop() };

    let created = Envelope::new(
        "products",
        id.to_string(),
        1,
        ProductCreated {
            product: snapshot(id, "Mug", 10),
        },
    )
    .into_raw()
    .unwrap();
    assert!(products.apply_idempotent(&created).await.unwrap());
    assert_eq!(get().await.unwrap().available, 10);

    assert!(products.apply_idempotent(&stock(id, 2, 9)).await.unwrap());
    let replica = get().await.unwrap();
    assert_eq!((replica.version, replica.available), (2, 9));

    // A replay of version 2 with other figures, and the creation again: nothing moves.
    assert!(products.apply_idempotent(&stock(id, 2, 1)).await.unwrap());
    assert!(products.apply_idempotent(&created).await.unwrap());
    let replica = get().await.unwrap();
    assert_eq!((replica.version, replica.available), (2, 9));

    // Version 4 with 3 missing: refused, the replica stays.
    assert!(products.apply_idempotent(&stock(id, 4, 5)).await.is_err());
    assert_eq!(get().await.unwrap().version, 2);

    // A newer snapshot applies over a gap.
    let updated = Envelope::new(
        "products",
        id.to_string(),
        5,
        ProductUpdated {
            product: snapshot(id, "Big mug", 7),
        },
    )
    .into_raw()
    .unwrap();
    assert!(products.apply_idempotent(&updated).await.unwrap());
    let replica = get().await.unwrap();
    assert_eq!(
        (replica.version, replica.title.as_str(), replica.available),
        (5, "Big mug", 7)
    );

    // A deletion applies over a gap (v6 never came), as the product's last word; its replay is
    // stale.
    let deleted = |version| {
        Envelope::new(
            "products",
            id.to_string(),
            version,
            ProductDeleted {
                product_id: id.into(),
                deleted_at: chrono::Utc::now(),
            },
        )
        .into_raw()
        .unwrap()
    };
    assert!(products.apply_idempotent(&deleted(7)).await.unwrap());
    assert!(products.apply_idempotent(&deleted(7)).await.unwrap());
    let replica = get().await.unwrap();
    assert_eq!((replica.version, replica.deleted), (7, true));

    // A change for a product never seen is refused.
    assert!(
        products
            .apply_idempotent(&stock(Uuid::new_v4(), 2, 1))
            .await
            .is_err()
    );
    let never = Envelope::new(
        "products",
        "x",
        3,
        ProductDeleted {
            product_id: Uuid::new_v4().into(),
            deleted_at: chrono::Utc::now(),
        },
    )
    .into_raw()
    .unwrap();
    assert!(products.apply_idempotent(&never).await.is_err());
}
