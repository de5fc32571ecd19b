//! The live feed: fan-out across replicas, catching up with a cursor, who may open a socket, and
//! keeping sockets (pings, revocation, slow clients).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use storefront_notifications::{SocketConfig, hub::Frame};
use tokio_tungstenite::tungstenite::{
    Error as WsError, client::IntoClientRequest, http::HeaderValue,
};
use uuid::Uuid;

use crate::helpers::{Shop, closed_with, eventually, next, say_goodbye, shop, within};

fn quick_pings() -> SocketConfig {
    SocketConfig {
        ping_interval: Duration::from_secs(1),
        ..SocketConfig::default()
    }
}

#[tokio::test]
async fn one_event_reaches_the_users_sockets_on_both_replicas_once() {
    let shop = shop(2, SocketConfig::default()).await;
    let alice = shop.user();
    let bob = shop.user();
    let (mut on_first, hello) = shop.socket(0, &alice.token, None).await;
    assert_eq!(hello["unread"], 0);
    assert_eq!(hello["latest_id"], 0);
    let (mut on_second, _) = shop.socket(1, &alice.token, None).await;
    let (mut bobs, _) = shop.socket(1, &bob.token, None).await;

    let order = Uuid::new_v4();
    shop.confirmed(&alice, order).await;
    for socket in [&mut on_first, &mut on_second] {
        let message = next(socket).await.expect("the notification arrives");
        assert_eq!(message["type"], "notification");
        assert_eq!(message["notification"]["kind"], "order-confirmed");
        assert_eq!(message["notification"]["order_id"], order.to_string());
        assert_eq!(
            within(socket, Duration::from_millis(1500)).await,
            None,
            "exactly once"
        );
    }
    assert_eq!(
        within(&mut bobs, Duration::from_millis(500)).await,
        None,
        "Bob gets nothing of Alice's"
    );

    // A broadcast reaches everyone, on either replica.
    shop.new_product("Linen apron").await;
    for socket in [&mut on_first, &mut on_second, &mut bobs] {
        let message = next(socket).await.expect("the broadcast arrives");
        assert_eq!(message["notification"]["kind"], "new-product");
        assert_eq!(message["notification"]["broadcast"], true);
    }
}

#[tokio::test]
async fn a_reconnect_with_the_last_id_fills_the_gap_then_goes_live() {
    let shop = shop(1, SocketConfig::default()).await;
    let alice = shop.user();
    let (mut socket, _) = shop.socket(0, &alice.token, None).await;
    shop.confirmed(&alice, Uuid::new_v4()).await;
    let first = next(&mut socket).await.expect("live");
    let last_seen = first["notification"]["id"].as_i64().unwrap();
    say_goodbye(&mut socket).await;
    drop(socket);

    // Missed while away.
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    // Events of two orders go to two partitions, which the consumer may read in either
    // order: wait for the first to be stored so the replay order is known.
    shop.completed(&alice, a).await;
    shop.history(&alice, 2).await;
    shop.cancelled(&alice, b, "payment window expired").await;
    shop.history(&alice, 3).await;

    let (mut socket, hello) = shop.socket(0, &alice.token, Some(last_seen)).await;
    assert_eq!(hello["unread"], 3);
    let missed: Vec<Value> = vec![
        next(&mut socket).await.expect("the first missed"),
        next(&mut socket).await.expect("the second missed"),
    ];
    assert_eq!(missed[0]["notification"]["order_id"], a.to_string());
    assert_eq!(missed[1]["notification"]["order_id"], b.to_string());
    assert!(missed[0]["notification"]["id"].as_i64().unwrap() > last_seen);
    assert!(
        missed[1]["notification"]["id"].as_i64().unwrap()
            > missed[0]["notification"]["id"].as_i64().unwrap()
    );
    assert_eq!(within(&mut socket, Duration::from_millis(500)).await, None);

    // And it is live again.
    shop.confirmed(&alice, Uuid::new_v4()).await;
    let live = next(&mut socket).await.expect("live after the replay");
    assert_eq!(live["notification"]["kind"], "order-confirmed");
}

async fn refused(shop: &Shop, headers: &[(&'static str, String)]) -> StatusCode {
    let mut request = format!("ws://{}/ws/notifications", shop.replicas[0].addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(WsError::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("a problem+json body");
            assert!(
                body["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://storefront.dev/problems/")
            );
            StatusCode::from_u16(response.status().as_u16()).unwrap()
        }
        Ok(_) => panic!("the socket opened"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn only_a_valid_token_opens_a_socket() {
    let shop = shop(1, SocketConfig::default()).await;
    let alice = shop.user();
    let bearer = |token: &str| ("sec-websocket-protocol", format!("bearer, {token}"));
    assert_eq!(refused(&shop, &[]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused(&shop, &[bearer("garbage")]).await,
        StatusCode::UNAUTHORIZED
    );
    let (expired, _) = shop.mint(alice.id, -60);
    assert_eq!(
        refused(&shop, &[bearer(&expired)]).await,
        StatusCode::UNAUTHORIZED
    );
    // The subprotocol must carry the token after `bearer`.
    assert_eq!(
        refused(&shop, &[("sec-websocket-protocol", "bearer".into())]).await,
        StatusCode::UNAUTHORIZED
    );
    // The cookie from another site's page is refused; from the shop's own page it is fine.
    let cookie = ("cookie", format!("sf_access={}", alice.token));
    assert_eq!(
        refused(
            &shop,
            &[cookie.clone(), ("origin", "https://evil.example".into())]
        )
        .await,
        StatusCode::FORBIDDEN
    );
    let mut request = format!("ws://{}/ws/notifications", shop.replicas[0].addr)
        .into_client_request()
        .unwrap();
    let host = shop.replicas[0].addr.to_string();
    request
        .headers_mut()
        .insert("cookie", HeaderValue::from_str(&cookie.1).unwrap());
    request.headers_mut().insert(
        "origin",
        HeaderValue::from_str(&format!("http://{host}")).unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("same-origin cookie socket");
    assert_eq!(next(&mut socket).await.unwrap()["type"], "hello");
    // An API client's Authorization header works too.
    let mut request = format!("ws://{}/ws/notifications", shop.replicas[0].addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", alice.token)).unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("bearer header socket");

    // A plain GET with a good token is told this is a socket.
    let plain = shop.get("/ws/notifications", Some(&alice.token)).await;
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);
    let bad_cursor = shop
        .get("/ws/notifications?after=-1", Some(&alice.token))
        .await;
    assert_eq!(bad_cursor.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Revoked: refused.
    shop.revocations
        .revoke(alice.claims.jti, alice.claims.exp)
        .await
        .unwrap();
    assert_eq!(
        refused(&shop, &[bearer(&alice.token)]).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_token_revoked_while_the_socket_is_open_closes_it() {
    let shop = shop(1, quick_pings()).await;
    let alice = shop.user();
    let (mut socket, _) = shop.socket(0, &alice.token, None).await;
    shop.revocations
        .revoke(alice.claims.jti, alice.claims.exp)
        .await
        .unwrap();
    assert_eq!(closed_with(&mut socket).await, Some(4001));
}

#[tokio::test]
async fn idle_sockets_live_on_and_dead_ones_are_dropped() {
    let shop = shop(1, quick_pings()).await;
    let hub = shop.replicas[0].hub.clone();
    let alice = shop.user();
    let (mut alive, _) = shop.socket(0, &alice.token, None).await;
    let (silent, _) = shop.socket(0, &alice.token, None).await;
    assert_eq!(hub.open(), 2);
    // The live client reads (and so answers pings) for four ping intervals; the silent one
    // never reads, so never answers.
    assert_eq!(within(&mut alive, Duration::from_secs(4)).await, None);
    eventually("the silent socket is dropped", || async { hub.open() == 1 }).await;
    shop.confirmed(&alice, Uuid::new_v4()).await;
    assert!(
        next(&mut alive).await.is_some(),
        "the idle socket still works"
    );
    drop(silent);
}

#[tokio::test]
async fn a_slow_client_is_cut_loose_without_holding_up_the_others() {
    let shop = shop(
        1,
        SocketConfig {
            send_buffer: 4,
            ..SocketConfig::default()
        },
    )
    .await;
    let hub = shop.replicas[0].hub.clone();
    let (slow, fast) = (Uuid::new_v4(), Uuid::new_v4());
    let mut slow = hub.register(slow.into()).unwrap();
    let mut fast = hub.register(fast.into()).unwrap();
    let started = std::time::Instant::now();
    for id in 1..=100 {
        let frame = Frame {
            id,
            text: format!("{{\"n\":{id}}}").into(),
        };
        hub.deliver("*", &frame);
        // The fast one keeps up.
        assert_eq!(fast.frames.recv().await.unwrap().id, id);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "delivery never waited on the slow socket"
    );
    let mut got = Vec::new();
    while let Some(frame) = slow.frames.recv().await {
        got.push(frame.id);
    }
    assert_eq!(
        got,
        [1, 2, 3, 4],
        "the slow one got what fit, then was closed"
    );
    assert_eq!(hub.open(), 1);

    // End to end: a socket that never reads does not hold up a reader.
    let alice = shop.user();
    let (_never_reads, _) = shop.socket(0, &alice.token, None).await;
    let (mut reader, _) = shop.socket(0, &alice.token, None).await;
    for _ in 0..20 {
        shop.confirmed(&alice, Uuid::new_v4()).await;
    }
    let mut ids = Vec::new();
    while ids.len() < 20 {
        let message = next(&mut reader).await.expect("every notification arrives");
        ids.push(message["notification"]["id"].as_i64().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
}

/// The cart badge's news: a cart's count reaches its owner's sockets on every replica — a socket
/// that was sent a backlog too (the news is not a notification, so never skipped as a replay) —
/// and nobody else's.
#[tokio::test]
async fn a_carts_count_reaches_its_owners_sockets_and_only_theirs() {
    let shop = shop(2, SocketConfig::default()).await;
    let alice = shop.user();
    let bob = shop.user();
    shop.signed_up(&alice).await;
    shop.confirmed(&alice, Uuid::now_v7()).await;
    shop.history(&alice, 1).await;
    let (mut replayed, _) = shop.socket(0, &alice.token, Some(0)).await;
    let replay = next(&mut replayed)
        .await
        .expect("the notification, replayed");
    assert_eq!(replay["type"], "notification");
    let (mut other, _) = shop.socket(1, &alice.token, None).await;
    let (mut bobs, _) = shop.socket(1, &bob.token, None).await;

    shop.cart_changed(&alice, 3, 7).await;
    for socket in [&mut replayed, &mut other] {
        // The notification's own live frame may still be on its way to the socket opened last.
        let mut news = next(socket).await.expect("the cart's count");
        while news["type"] == "notification" {
            news = next(socket).await.expect("the cart's count");
        }
        assert_eq!(
            news,
            serde_json::json!({ "type": "cart", "count": 3, "version": 7 })
        );
    }
    assert_eq!(
        within(&mut bobs, Duration::from_millis(500)).await,
        None,
        "another customer hears nothing of it"
    );
}

/// A page that opens its socket just after its cart changed (it reloaded while the order it
/// cancelled put its lines back) gets the latest count right after the hello.
#[tokio::test]
async fn a_socket_opened_after_a_cart_change_gets_the_latest_count_first() {
    let shop = shop(1, SocketConfig::default()).await;
    let alice = shop.user();
    let bob = shop.user();
    shop.cart_changed(&alice, 2, 5).await;
    let (mut socket, _) = shop.socket(0, &alice.token, None).await;
    let news = next(&mut socket).await.expect("the latest count");
    assert_eq!(
        news,
        serde_json::json!({ "type": "cart", "count": 2, "version": 5 })
    );
    let (mut other, _) = shop.socket(0, &bob.token, None).await;
    assert_eq!(
        within(&mut other, Duration::from_millis(300)).await,
        None,
        "no count for a customer whose cart never changed"
    );
}
