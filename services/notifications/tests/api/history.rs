//! What events become, and the HTTP history: pages, read marks, and its bad inputs.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;
use storefront_events::{Envelope, orders::OrderAwaitingPayment};
use storefront_notifications::SocketConfig;
use uuid::Uuid;

use crate::helpers::{User, eventually, problem, shop, usd};

#[tokio::test]
async fn the_saga_events_become_the_users_notifications_newest_first() {
    let shop = shop(1, SocketConfig::default()).await;
    let alice = shop.user();
    let bob = shop.user();
    let (paid, lost) = (Uuid::new_v4(), Uuid::new_v4());
    shop.confirmed(&alice, paid).await;
    shop.completed(&alice, paid).await;
    shop.cancelled(&alice, lost, "out of stock: Teapot").await;
    let page = shop.history(&alice, 3).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{page}");
    let kinds: Vec<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["order-cancelled", "order-completed", "order-confirmed"]
    );
    let ids: Vec<i64> = items.iter().map(|n| n["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(items[0]["order_id"], lost.to_string());
    assert_eq!(items[0]["order_status"], "cancelled");
    assert_eq!(items[0]["link"], format!("/orders/{lost}"));
    assert!(
        items[0]["body"]
            .as_str()
            .unwrap()
            .contains("out of stock: Teapot"),
        "the reason is told: {}",
        items[0]
    );
    assert!(
        items[1]["body"].as_str().unwrap().contains("25.00 USD"),
        "{}",
        items[1]
    );
    assert_eq!(items[2]["order_status"], "awaiting_payment");
    // The total and what makes it up, from the order's pricing.
    assert!(
        items[2]["body"]
            .as_str()
            .unwrap()
            .contains("Pay 25.00 USD (items 18.41 USD, Shipping 4.99 USD, Tax (8%) 1.60 USD)"),
        "{}",
        items[2]
    );
    assert!(
        items
            .iter()
            .all(|n| n["read"] == false && n["broadcast"] == false)
    );
    assert_eq!(page["unread"], 3);
    assert_eq!(page["next_before"], Value::Null);

    // Bob sees none of Alice's, and cannot mark them read.
    let theirs: Value = shop
        .get("/api/notifications", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], serde_json::json!([]));
    assert_eq!(theirs["unread"], 0);
    problem(
        shop.post(&format!("/api/notifications/{}/read", ids[0]), &bob.token)
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn a_new_product_is_for_everyone_and_read_marks_are_per_user() {
    let shop = shop(1, SocketConfig::default()).await;
    let alice = shop.user();
    let bob = shop.user();
    shop.signed_up(&alice).await;
    shop.signed_up(&bob).await;
    let product = shop.new_product("Copper kettle").await;
    let unread = |user: &User| {
        let token = user.token.clone();
        let shop = &shop;
        async move {
            let page: Value = shop
                .get("/api/notifications", Some(&token))
                .await
                .json()
                .await
                .unwrap();
            page["unread"].as_u64().unwrap()
        }
    };
    // Counted once notifications knows each account (its user.created may come after).
    eventually("the announcement counts for alice", || async {
        unread(&alice).await == 1
    })
    .await;
    eventually("and for bob", || async { unread(&bob).await == 1 }).await;
    let page = shop.history(&alice, 1).await;
    let news = &page["items"][0];
    assert_eq!(news["kind"], "new-product");
    assert_eq!(news["broadcast"], true);
    assert_eq!(news["product_id"], product.to_string());
    assert_eq!(news["link"], format!("/products/{product}"));
    assert_eq!(news["title"], "New in the shop: Copper kettle");
    let id = news["id"].as_i64().unwrap();

    let read = shop
        .post(&format!("/api/notifications/{id}/read"), &alice.token)
        .await;
    assert_eq!(read.status(), StatusCode::NO_CONTENT);
    // Marking twice is harmless.
    let again = shop
        .post(&format!("/api/notifications/{id}/read"), &alice.token)
        .await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    let mine = shop.history(&alice, 1).await;
    assert_eq!(mine["items"][0]["read"], true);
    assert_eq!(mine["unread"], 0);
    let bobs = shop.history(&bob, 1).await;
    assert_eq!(bobs["items"][0]["read"], false, "Alice's read mark is hers");
    assert_eq!(bobs["unread"], 1);
}

#[tokio::test]
async fn a_new_account_starts_with_earlier_announcements_read() {
    let shop = shop(1, SocketConfig::default()).await;
    let watcher = shop.user();
    shop.new_product("Linen apron").await;
    shop.history(&watcher, 1).await;

    let carol = shop.user();
    let unread = || async {
        let page: Value = shop
            .get("/api/notifications", Some(&carol.token))
            .await
            .json()
            .await
            .unwrap();
        page["unread"].as_u64().unwrap()
    };
    // Before notifications knows the account (its user.created is on its way: the first page
    // after sign-up), the shop's earlier announcements are neither counted nor shown as new.
    // (A walk found the bell of a brand-new customer showing every earlier announcement.)
    assert_eq!(unread().await, 0);
    let page = shop.history(&carol, 1).await;
    assert_eq!(page["items"][0]["read"], true, "listed, as read");

    shop.signed_up(&carol).await;
    // What comes after the account was made is news; what came before stays read.
    shop.new_product("Wool blanket").await;
    eventually("the later announcement is news to carol", || async {
        unread().await == 1
    })
    .await;
    let page = shop.history(&carol, 2).await;
    assert_eq!(page["unread"], 1);
    assert_eq!(page["items"][0]["read"], false);
    assert_eq!(page["items"][1]["read"], true);
}

#[tokio::test]
async fn pages_walk_back_with_next_before_and_read_all_clears_the_count() {
    let shop = shop(1, SocketConfig::default()).await;
    let alice = shop.user();
    for _ in 0..5 {
        shop.confirmed(&alice, Uuid::new_v4()).await;
    }
    shop.history(&alice, 5).await;
    let first: Value = shop
        .get("/api/notifications?limit=2", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let mut seen: Vec<i64> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    let mut before = first["next_before"].as_i64().expect("a next page");
    loop {
        let page: Value = shop
            .get(
                &format!("/api/notifications?limit=2&before={before}"),
                Some(&alice.token),
            )
            .await
            .json()
            .await
            .unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_i64().unwrap()),
        );
        match page["next_before"].as_i64() {
            Some(next) => before = next,
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "every notification once, newest first");
    assert_eq!(seen.len(), 5);

    let all: Value = shop
        .post("/api/notifications/read-all", &alice.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["read_through"], seen[0]);
    let page = shop.history(&alice, 5).await;
    assert_eq!(page["unread"], 0);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["read"] == true)
    );
    // A later one is unread again.
    shop.completed(&alice, Uuid::new_v4()).await;
    let page = shop.history(&alice, 6).await;
    assert_eq!(page["unread"], 1);
}

#[tokio::test]
async fn a_redelivered_event_makes_one_notification() {
    let shop = shop(1, SocketConfig::default()).await;
    let alice = shop.user();
    let order = Uuid::new_v4();
    let envelope = Envelope::new(
        "orders",
        order.to_string(),
        2,
        OrderAwaitingPayment {
            order_id: order.into(),
            user_id: alice.id.into(),
            charges: Vec::new(),
            total: usd(100),
            expires_at: Utc::now(),
        },
    )
    .into_raw()
    .unwrap();
    shop.republish(&envelope).await;
    shop.republish(&envelope).await;
    // A marker event after both: once it is stored, both copies were consumed.
    shop.completed(&alice, order).await;
    let page = shop.history(&alice, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let page_again = shop.history(&alice, 2).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page_again["items"], page["items"]);
}

#[tokio::test]
async fn bad_requests_are_problems() {
    let shop = shop(1, SocketConfig::default()).await;
    let alice = shop.user();
    problem(
        shop.get("/api/notifications", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    problem(
        shop.get("/api/notifications", Some("not-a-token")).await,
        StatusCode::UNAUTHORIZED,
        "invalid-token",
    )
    .await;
    let (expired, _) = shop.mint(alice.id, -60);
    problem(
        shop.get("/api/notifications", Some(&expired)).await,
        StatusCode::UNAUTHORIZED,
        "token-expired",
    )
    .await;
    for query in ["limit=0", "limit=101", "before=0"] {
        let body = problem(
            shop.get(&format!("/api/notifications?{query}"), Some(&alice.token))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await;
        assert!(body["errors"].is_array(), "{body}");
    }
    for query in ["limit=ten", "user_id=someone", "before=-"] {
        problem(
            shop.get(&format!("/api/notifications?{query}"), Some(&alice.token))
                .await,
            StatusCode::BAD_REQUEST,
            "malformed-request",
        )
        .await;
    }
    problem(
        shop.post("/api/notifications/999999/read", &alice.token)
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    problem(
        shop.post("/api/notifications/0/read", &alice.token).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    problem(
        shop.post("/api/notifications/abc/read", &alice.token).await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    // Revoked (signed out): refused everywhere.
    shop.revocations
        .revoke(alice.claims.jti, alice.claims.exp)
        .await
        .unwrap();
    problem(
        shop.get("/api/notifications", Some(&alice.token)).await,
        StatusCode::UNAUTHORIZED,
        "token-revoked",
    )
    .await;
}

/// What the consumer's lane does when it is behind: the waiting notifications stored together
/// take the next ids in their events' order (after those stored one by one), and a redelivered
/// event among them fails the whole insert — the consumer then applies them one by one, where the
/// redelivery stores nothing.
#[tokio::test]
async fn notifications_stored_together_take_the_next_ids_in_order_and_refuse_a_redelivery() {
    use storefront_kit::{
        mongo::Mongo,
        testing::{TestStack, unique},
    };
    use storefront_notifications::store::{Draft, Kind, Store};

    let stack = TestStack::from_env();
    let mongo = Mongo::connect(&stack.mongo(&unique("notifications")), "test")
        .await
        .unwrap();
    let store = Store::new(&mongo.db);
    store.ensure_indexes().await.unwrap();
    let user = Uuid::new_v4();
    let draft = |title: &str| Draft {
        to: user.to_string(),
        kind: Kind::OrderConfirmed,
        title: title.to_owned(),
        body: String::new(),
        link: None,
        order_id: None,
        order_status: None,
        product_id: None,
    };
    let first = Uuid::now_v7();
    let mut session = mongo.begin().await.unwrap();
    let alone = store
        .insert(&mut session, draft("alone"), first)
        .await
        .unwrap()
        .unwrap();
    session.commit_transaction().await.unwrap();

    let events: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let mut session = mongo.begin().await.unwrap();
    let stored = store
        .insert_all(
            &mut session,
            events
                .iter()
                .zip(["a", "b", "c"])
                .map(|(id, title)| (draft(title), *id))
                .collect(),
        )
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();
    let ids: Vec<(i64, String)> = stored.iter().map(|n| (n.id, n.title.clone())).collect();
    assert_eq!(
        ids,
        [
            (alone.id + 1, "a".to_owned()),
            (alone.id + 2, "b".to_owned()),
            (alone.id + 3, "c".to_owned())
        ]
    );
    let page = store.page(user.into(), None, 10).await.unwrap();
    assert_eq!(page.len(), 4);

    // A batch holding an event already stored: nothing of it is stored.
    let fresh = Uuid::now_v7();
    let mut session = mongo.begin().await.unwrap();
    let again = store
        .insert_all(
            &mut session,
            vec![(draft("fresh"), fresh), (draft("again"), events[1])],
        )
        .await;
    assert!(again.is_err(), "a redelivery in a batch must fail it");
    let _ = session.abort_transaction().await;
    assert_eq!(store.page(user.into(), None, 10).await.unwrap().len(), 4);
    // One by one, the redelivery stores nothing and the fresh one its notification.
    for (title, id, expect_new) in [("fresh", fresh, true), ("again", events[1], false)] {
        let mut session = mongo.begin().await.unwrap();
        let one = store.insert(&mut session, draft(title), id).await.unwrap();
        assert_eq!(one.is_some(), expect_new, "{title}");
        if one.is_some() {
            session.commit_transaction().await.unwrap();
        } else {
            let _ = session.abort_transaction().await;
        }
    }
    assert_eq!(store.page(user.into(), None, 10).await.unwrap().len(), 5);
}
