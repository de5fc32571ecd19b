//! Place, list, read and cancel orders.
//!
//! By concern: `views.rs` (what an order looks like here), `placing.rs` (placing and quoting);
//! this file lists, shows (with the long-poll), holds for payment and cancels.

use std::time::Duration;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::Deserialize;
use storefront_events::OrderId;
use storefront_events::UserId;
use storefront_kit::{
    Error, Json,
    auth::{CurrentUser, RequireAdmin},
    error::{Path, Query},
    validate::paging,
};

use crate::{
    AppState,
    app::{following, paying},
    domain::{Fields, OrderState},
    store::OrderDoc,
};

mod placing;
mod views;

pub use placing::{PlaceBody, QuoteView, place, quote};
pub use views::{OrderList, OrderView};

/// The longest a request waits for an order to change (below the server's request timeout).
pub const MAX_WAIT_SECS: u64 = 10;

/// The query of a list of orders.
// `default` + `skip_serializing_if` on its fields: optional parameters in the schema, without a
// `default: null`; reading is the same.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OrderListQuery")]
pub struct ListQuery {
    /// The page, a whole number from 1 to 1000 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    page: Option<String>,
    /// Orders per page, a whole number from 1 to 100 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    per_page: Option<String>,
    /// Only orders in this state; all without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "OrderState")]
    status: Option<String>,
}

async fn list(
    state: &AppState,
    user: Option<UserId>,
    query: ListQuery,
) -> Result<Json<OrderList>, Error> {
    let mut fields = Fields::default();
    let (page, per_page) = paging(
        query.page.as_deref(),
        query.per_page.as_deref(),
        &mut fields,
    );
    let status = match query.status.as_deref() {
        None => None,
        Some(raw) => fields
            .check(
                "status",
                OrderState::parse(raw).map(Some).ok_or_else(|| {
                    "one of pending, awaiting_payment, completed, cancelled".to_owned()
                }),
            )
            .flatten(),
    };
    fields.finish()?;
    let found = state.store.list(user, status, page, per_page).await?;
    Ok(Json(OrderList {
        items: found.items.iter().map(OrderView::from).collect(),
        page,
        per_page,
        total: found.total,
    }))
}

/// `GET /api/orders`: the signed-in customer's orders, newest first.
pub async fn mine(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<OrderList>, Error> {
    list(&state, Some(user.sub), query).await
}

/// `GET /api/orders/admin/all`: every order, filtered by `status`.
pub async fn all(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Json<OrderList>, Error> {
    list(&state, None, query).await
}

/// The order a path names; anything that is not an order id is not found.
fn order_id(id: &str) -> Result<OrderId, Error> {
    id.parse()
        .map_err(|_| Error::NotFound("no such order".into()))
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OrderWaitQuery")]
pub struct WaitQuery {
    /// Seconds (1 to 10, `MAX_WAIT_SECS`) to wait for the order to change, when `If-None-Match`
    /// names its current version, before answering 304.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64", range(min = 1, max = MAX_WAIT_SECS))]
    wait: Option<u64>,
}

fn wait_secs(query: &WaitQuery) -> Result<u64, Error> {
    match query.wait {
        None => Ok(0),
        Some(secs) if (1..=MAX_WAIT_SECS).contains(&secs) => Ok(secs),
        Some(_) => Err(Error::field(
            "wait",
            format!("between 1 and {MAX_WAIT_SECS} seconds"),
        )),
    }
}

/// The order's entity tag: its version, which every visible change raises.
fn etag(order: &OrderDoc) -> String {
    format!("\"{}\"", order.version)
}

/// The version an `If-None-Match` names (`"3"` or `W/"3"`); anything else names none.
fn known_version(headers: &HeaderMap) -> Option<i64> {
    let value = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    value.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// `GET /api/orders/{id}`, with an `ETag` (the version). With `If-None-Match` naming the current
/// version it answers 304 — after waiting up to `?wait=` seconds for the order to change first,
/// so a client follows an order with one request per change instead of polling.
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let wait = wait_secs(&query)?;
    let mut order = following::visible(&state, &user, order_id(&id)?).await?;
    let known = known_version(&headers);
    if wait > 0 && known == Some(order.version) {
        order = following::next_version(&state, order, Duration::from_secs(wait)).await?;
    }
    let tag = HeaderValue::from_str(&etag(&order)).map_err(Error::internal)?;
    let mut response = if known == Some(order.version) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(OrderView::from(&order)).into_response()
    };
    response.headers_mut().insert(header::ETAG, tag);
    Ok(response)
}

/// `POST /internal/orders/{id}/payment-hold` (payments, with the customer's token; not routed by
/// the Ingress): holds the caller's order for payment and answers it, with the total to charge.
/// An order whose stock is still being reserved is waited for up to `?wait=` seconds. 409
/// `already-paid` for a completed order, 409 `order-not-payable` for one that ended or is still
/// pending after the wait; anyone else's order is 404.
pub async fn hold_for_payment(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<OrderView>, Error> {
    let wait = Duration::from_secs(wait_secs(&query)?);
    let order = paying::hold_for_payment(&state, user.sub, order_id(&id)?, wait).await?;
    Ok(Json(OrderView::from(&order)))
}

/// `POST /api/orders/{id}/cancel`: only before payment (409 `payment-in-progress` while payments
/// holds it); the stock is released.
pub async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Error> {
    let order = following::cancel(&state, &user, order_id(&id)?).await?;
    Ok(Json(OrderView::from(&order)))
}
