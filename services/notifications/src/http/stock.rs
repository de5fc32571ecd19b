//! `GET /ws/notifications/stock?products=ID,ID,…`: live stock of a few products, for anyone.
//!
//! The shop's product and catalog pages open it so a visitor sees a product sell out, or come
//! back, without reloading. It is public (stock is what the catalog shows anyway) and bounded:
//! at most [`MAX_PRODUCTS`] products a socket, `WS_MAX_PRODUCT_SOCKETS` sockets a replica (then
//! 503), tiny buffers, clients may only answer pings. It sends JSON text:
//! `{"type":"hello","products":N}` first, then
//! `{"type":"stock","product_id":…,"available":N,"in_stock":bool,"version":V}` for every stock
//! change of those products (reserved, released, sold, adjusted) while it is open. Nothing is
//! replayed: the page shows what it rendered until the next change, and a client keeps the
//! highest `version` it saw (a redelivered change may come twice).

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, WebSocket, rejection::WebSocketUpgradeRejection},
    },
    response::Response,
};
use serde::Deserialize;
use serde_json::json;
use storefront_events::ProductId;
use storefront_kit::{Error, error::Query};

use super::socket::{keep, send};
use crate::{AppState, hub::Watch};

/// Products one socket may watch: a page of the catalog and then some.
pub const MAX_PRODUCTS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchQuery {
    /// The products to watch: ids separated by commas.
    products: Option<String>,
}

/// The distinct product ids of `?products=`, or what is wrong with them (by field).
fn products(raw: Option<&str>) -> Result<Vec<ProductId>, Error> {
    let wrong = |message: String| Error::field("products", message);
    let raw = raw
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| wrong("name the products to watch: ids separated by commas".into()))?;
    let mut ids: Vec<ProductId> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id =
            ProductId::parse(part).map_err(|_| wrong(format!("{part:?} is not a product id")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
        if ids.len() > MAX_PRODUCTS {
            return Err(wrong(format!("at most {MAX_PRODUCTS} products a socket")));
        }
    }
    if ids.is_empty() {
        return Err(wrong("name at least one product".into()));
    }
    Ok(ids)
}

pub async fn connect(
    State(state): State<AppState>,
    Query(query): Query<WatchQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    let products = products(query.products.as_deref())?;
    let upgrade = upgrade.map_err(|rejection| {
        Error::BadRequest(format!(
            "this endpoint speaks WebSocket only: {}",
            rejection.body_text()
        ))
    })?;
    let count = products.len();
    let watch = state.hub.watch(products).map_err(|e| {
        tracing::info!("{e}");
        Error::Unavailable(format!("{e}; try again shortly"))
    })?;
    // Clients only answer pings.
    Ok(upgrade
        .read_buffer_size(1024)
        .write_buffer_size(1024)
        .max_message_size(1024)
        .max_frame_size(1024)
        .on_upgrade(move |socket| session(socket, state, watch, count)))
}

async fn session(mut socket: WebSocket, state: AppState, mut watch: Watch, count: usize) {
    let hello = json!({ "type": "hello", "products": count }).to_string();
    if !send(&mut socket, Message::Text(hello.into())).await {
        return;
    }
    keep(
        &mut socket,
        &mut watch.frames,
        state.sockets.ping_interval,
        "fell behind; reconnect",
        |_| false,
        || async { Ok(()) },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_are_a_short_list_of_ids() {
        let a = ProductId::new();
        let b = ProductId::new();
        assert_eq!(
            products(Some(&format!(" {a}, {b},{a} ,"))).unwrap(),
            vec![a, b]
        );
        for raw in [
            None,
            Some(""),
            Some(" , "),
            Some("mug"),
            Some(&*format!("{a},x")),
        ] {
            assert!(
                matches!(products(raw), Err(Error::Validation(_))),
                "{raw:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_PRODUCTS)
            .map(|_| ProductId::new().to_string())
            .collect();
        assert!(products(Some(&many.join(","))).is_err());
        let enough: Vec<String> = many[..MAX_PRODUCTS].to_vec();
        assert_eq!(
            products(Some(&enough.join(","))).unwrap().len(),
            MAX_PRODUCTS
        );
    }
}
