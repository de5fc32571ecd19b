//! The wire contracts: envelopes round-trip, types are checked, and `docs/events/` is current.

use std::path::PathBuf;

use chrono::Utc;
use storefront_events::{
    Envelope, EnvelopeError, OrderId, ProductId, Topic, UserId, dlq_topic, schemas, users::*,
};

fn created() -> UserCreated {
    UserCreated {
        user_id: UserId::new(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
        role: Role::Customer,
        created_at: Utc::now(),
    }
}

#[test]
fn envelope_round_trips_through_json_bytes() {
    let typed = Envelope::new("auth", "u-1", 1, created());
    let bytes = serde_json::to_vec(&typed.clone().into_raw().unwrap()).unwrap();
    let raw = Envelope::from_slice(&bytes).unwrap();
    assert_eq!(raw.event_type, "user.created");
    assert_eq!(raw.decode::<UserCreated>().unwrap(), typed);
}

#[test]
fn every_user_event_round_trips() {
    let id = UserId::new();
    let updated = UserUpdated {
        user_id: id,
        email: "a@b.co".into(),
        name: "A".into(),
        role: Role::Admin,
        blocked: true,
        updated_at: Utc::now(),
    };
    let blocked = UserBlocked {
        user_id: id,
        blocked_by: UserId::new(),
        blocked_at: Utc::now(),
    };
    let unblocked = UserUnblocked {
        user_id: id,
        unblocked_by: UserId::new(),
        unblocked_at: Utc::now(),
    };
    let e = Envelope::new("auth", id.to_string(), 2, updated)
        .into_raw()
        .unwrap();
    assert!(e.decode::<UserUpdated>().is_ok());
    let e = Envelope::new("auth", id.to_string(), 3, blocked)
        .into_raw()
        .unwrap();
    assert!(e.decode::<UserBlocked>().is_ok());
    let e = Envelope::new("auth", id.to_string(), 4, unblocked)
        .into_raw()
        .unwrap();
    assert!(e.decode::<UserUnblocked>().is_ok());
}

#[test]
fn decoding_as_the_wrong_type_is_an_error_not_a_guess() {
    let raw = Envelope::new("auth", "u-1", 1, created())
        .into_raw()
        .unwrap();
    assert!(matches!(
        raw.decode::<UserBlocked>(),
        Err(EnvelopeError::WrongType {
            expected: "user.blocked",
            ..
        })
    ));
}

#[test]
fn unknown_envelope_fields_and_bad_json_are_refused() {
    let mut value =
        serde_json::to_value(Envelope::new("auth", "k", 1, created()).into_raw().unwrap()).unwrap();
    value["surprise"] = serde_json::json!(1);
    assert!(Envelope::from_slice(value.to_string().as_bytes()).is_err());
    assert!(Envelope::from_slice(b"{not json").is_err());
}

#[test]
fn topics_are_per_aggregate_under_the_shop_prefix() {
    assert_eq!(Topic::Users.name("shop"), "shop.users");
    assert_eq!(
        dlq_topic("shop.orders", "payments"),
        "shop.orders.dlq.payments"
    );
}

/// `STOREFRONT_BLESS=1 cargo test -p storefront-events` rewrites the schemas after a change.
#[test]
fn docs_events_schemas_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/events");
    let bless = std::env::var_os("STOREFRONT_BLESS").is_some();
    let mut stale = Vec::new();
    for (file, text) in schemas::all() {
        let path = dir.join(&file);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "docs/events is stale for {stale:?}: run `cargo xtask schemas` (or STOREFRONT_BLESS=1 cargo test -p storefront-events)"
    );
}

#[test]
fn saga_events_round_trip_and_refuse_unknown_fields() {
    use storefront_events::{
        Money,
        orders::{OrderCreated, OrderLine},
        products::{InventoryRejected, ShortLine},
    };
    let usd = |amount| Money {
        amount,
        currency: "USD".into(),
    };
    let order = OrderId::new();
    let created = OrderCreated {
        order_id: order,
        user_id: UserId::new(),
        lines: vec![OrderLine {
            product_id: ProductId::new(),
            title: "Mug".into(),
            unit_price: usd(1800),
            quantity: 2,
        }],
        charges: Vec::new(),
        total: usd(3600),
        created_at: Utc::now(),
        idempotency_key: None,
    };
    let raw = Envelope::new("orders", order.to_string(), 1, created.clone())
        .into_raw()
        .unwrap();
    assert_eq!(raw.event_type, "order.created");
    assert_eq!(raw.decode::<OrderCreated>().unwrap().data, created);

    let rejected = InventoryRejected {
        order_id: order,
        reason: "not enough stock for 1 item".into(),
        short: vec![ShortLine {
            product_id: ProductId::new(),
            requested: 2,
            available: 1,
        }],
    };
    let mut raw = Envelope::new("products", order.to_string(), 1, rejected)
        .into_raw()
        .unwrap();
    assert!(raw.decode::<InventoryRejected>().is_ok());
    raw.data["surprise"] = serde_json::json!(true);
    assert!(matches!(
        raw.decode::<InventoryRejected>(),
        Err(EnvelopeError::Malformed(_))
    ));
    assert!(matches!(
        raw.decode::<OrderCreated>(),
        Err(EnvelopeError::WrongType { .. })
    ));
}
