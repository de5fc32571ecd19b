//! Live stock: an anonymous socket watches a few products and hears each stock change of theirs,
//! on whichever replica it is open; it is refused before the upgrade when its list is wrong, and
//! a replica holds only so many.

use std::time::Duration;

use reqwest::StatusCode;
use storefront_notifications::SocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use uuid::Uuid;

use crate::helpers::{eventually, next, problem, shop, within};

#[tokio::test]
async fn a_stock_change_reaches_the_sockets_watching_that_product_on_every_replica() {
    let shop = shop(2, SocketConfig::default()).await;
    let (mug, pot, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut first = shop.watch(0, &[mug, pot]).await;
    let mut second = shop.watch(1, &[mug]).await;
    let mut elsewhere = shop.watch(1, &[other]).await;

    shop.stock_changed(mug, 4, 0).await;
    for socket in [&mut first, &mut second] {
        let news = next(socket).await.expect("the change arrives");
        assert_eq!(news["type"], "stock", "{news}");
        assert_eq!(news["product_id"], mug.to_string());
        assert_eq!(news["available"], 0);
        assert_eq!(news["in_stock"], false);
        assert_eq!(news["version"], 4);
    }
    assert_eq!(
        within(&mut elsewhere, Duration::from_millis(500)).await,
        None,
        "a socket hears only the products it watches"
    );

    shop.stock_changed(pot, 2, 7).await;
    let news = next(&mut first).await.expect("the pot's change");
    assert_eq!(
        (news["product_id"].as_str(), news["available"].as_i64()),
        (Some(pot.to_string().as_str()), Some(7))
    );
    assert_eq!(news["in_stock"], true);
    assert_eq!(within(&mut second, Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn a_stock_socket_needs_a_short_list_of_product_ids() {
    let shop = shop(1, SocketConfig::default()).await;
    let addr = shop.replicas[0].addr;
    let many: Vec<String> = (0..51).map(|_| Uuid::now_v7().to_string()).collect();
    for (query, status, kind) in [
        (
            "".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
        (
            "?products=".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
        (
            "?products=mug".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
        (
            format!("?products={}", many.join(",")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
        (
            "?after=3".to_owned(),
            StatusCode::BAD_REQUEST,
            "malformed-request",
        ),
        // A good list, but plain HTTP: no socket.
        (
            format!("?products={}", Uuid::now_v7()),
            StatusCode::BAD_REQUEST,
            "malformed-request",
        ),
    ] {
        let response = shop
            .http
            .get(format!("http://{addr}/ws/notifications/stock{query}"))
            .send()
            .await
            .unwrap();
        let body = problem(response, status, kind).await;
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert!(body["errors"].to_string().contains("products"), "{body}");
        }
    }
}

#[tokio::test]
async fn a_replica_holds_at_most_its_share_of_stock_sockets() {
    let shop = shop(
        1,
        SocketConfig {
            max_product_sockets: 2,
            ..SocketConfig::default()
        },
    )
    .await;
    let product = Uuid::now_v7();
    let first = shop.watch(0, &[product]).await;
    let _second = shop.watch(0, &[product]).await;
    let url = format!(
        "ws://{}/ws/notifications/stock?products={product}",
        shop.replicas[0].addr
    );
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 503),
        other => panic!(
            "a third socket should be refused, got {:?}",
            other.map(|_| ())
        ),
    }
    // One closes: there is room again.
    drop(first);
    eventually("a socket's place is freed when it closes", || async {
        tokio_tungstenite::connect_async(url.as_str()).await.is_ok()
    })
    .await;
}
