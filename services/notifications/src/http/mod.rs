//! `/api/notifications` (the signed-in user's history), `/ws/notifications` (live) and
//! `/ws/notifications/stock` (live stock of a few products, public).

mod list;
mod socket;
mod stock;

use axum::{
    Router,
    routing::{get, post},
};
use serde_json::{Value, json};
use storefront_kit::openapi::Api;

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/notifications", get(list::page))
        .route("/api/notifications/read-all", post(list::read_all))
        .route("/api/notifications/{id}/read", post(list::read))
        .merge(storefront_kit::openapi::route(
            "/api/notifications/openapi.json",
            openapi,
        ))
        .route("/ws/notifications", get(socket::connect))
        .route("/ws/notifications/stock", get(stock::connect))
        .with_state(state)
}

/// The path of marking one read, whose `{id}` is a number rather than text or a UUID.
const READ_ONE: &str = "/api/notifications/{id}/read";

/// The notifications' OpenAPI document: the HTTP operations above, in their order. The socket
/// is not HTTP request/response; the description tells how to open it.
pub fn openapi() -> Value {
    let mut api = Api::new(
        "Storefront notifications",
        "The signed-in user's notifications: their own (orders, payments) and the ones for \
         everyone (new products), newest first, with read marks (docs/api/notifications.md).\n\n\
         The live feed is a WebSocket, not listed here: `GET /ws/notifications[?after=ID]`. It \
         authenticates before the upgrade with the same access token as HTTP: the `sf_access` \
         cookie (browsers; the `Origin` must be this host or an allowed origin, else 403 \
         `origin-not-allowed`), the subprotocols `bearer, <token>` \
         (`new WebSocket(url, [\"bearer\", token])`; the server answers with `bearer`), or \
         `Authorization: Bearer`. No token, or a bad, expired or revoked one: 401 problem+json \
         and no socket; a plain GET without the upgrade: 400; too many sockets of one user: 429. \
         It sends JSON text: `{\"type\":\"hello\",\"unread\":N,\"latest_id\":ID}` first, then \
         `{\"type\":\"notification\",\"notification\":{…}}` (a `Notification`) for each one after \
         `after` (oldest first) and each new one. The token is checked again at every ping: a \
         revoked or expired one closes the socket with 4001; a client too slow to keep up is \
         closed with 1013 and reconnects with `?after=` the last id it saw.\n\n\
         Live stock is a second, public WebSocket: \
         `GET /ws/notifications/stock?products=ID,ID,…` (1 to 50 product ids; anything else is \
         422 by `products`, no upgrade 400, too many such sockets on the replica 503). It sends \
         `{\"type\":\"hello\",\"products\":N}`, then \
         `{\"type\":\"stock\",\"product_id\":…,\"available\":N,\"in_stock\":bool,\"version\":V}` \
         for every stock change of those products while it is open.",
    );
    api.operation(
        "GET",
        "/api/notifications",
        "listNotifications",
        "My notifications, newest first",
        |op| {
            op.customer()
                .describe(
                    "A page of the caller's notifications and the ones for everyone, newest \
                     first. For the next page pass `next_before` as `before`; it is null on the \
                     last page.",
                )
                .query::<list::PageQuery>()
                .ok::<list::Page>(200, "A page, with the number of unread notifications")
                .problem(
                    400,
                    "A query parameter is not a number, is given twice, or is not one of these (`malformed-request`).",
                )
                .problem(
                    422,
                    "`limit` is not between 1 and 100, or `before` is below 1 (`validation`).",
                );
        },
    )
    .operation(
        "POST",
        "/api/notifications/read-all",
        "readAllNotifications",
        "Mark all my notifications read",
        |op| {
            op.customer()
                .describe(
                    "Marks everything the caller can see now as read (a later notification is \
                     unread). Takes no body; marking again is fine.",
                )
                .ok::<list::ReadAll>(200, "Read up to this id");
        },
    )
    .operation(
        "POST",
        READ_ONE,
        "readNotification",
        "Mark one notification read",
        |op| {
            op.customer()
                .describe("Takes no body; marking one again is fine.")
                .path("id", "The notification's `id`")
                .empty(204, "Read")
                .problem(400, "`id` is not a whole number (`malformed-request`).")
                .problem(
                    404,
                    "The caller has no notification with this id (`not-found`), or it is below 1.",
                );
        },
    );
    storefront_kit::deadletters::document(&mut api, crate::SERVICE);
    let mut document = api.document();
    // The kit's path parameters are text or UUIDs; this one is a 64-bit notification id.
    document["paths"][READ_ONE]["post"]["parameters"][0]["schema"] =
        json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX });
    document
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_openapi_document_is_whole() {
        let document = super::openapi();
        storefront_kit::openapi::assert_whole(&document, 6);
        let read = &document["paths"][super::READ_ONE]["post"]["parameters"][0];
        assert_eq!(read["name"], "id");
        assert_eq!(read["schema"]["type"], "integer");
        let list = &document["paths"]["/api/notifications"]["get"]["parameters"];
        assert_eq!(
            list.as_array()
                .map(|p| p.iter().map(|p| p["name"].clone()).collect::<Vec<_>>()),
            Some(vec![json!("before"), json!("limit")])
        );
        assert!(
            document["paths"]
                .get("/api/notifications/openapi.json")
                .is_none()
        );
        assert!(document["paths"].get("/ws/notifications").is_none());
    }
}
