//! Place, list, read and cancel orders.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storefront_events::{Money, orders::PriceLine};
use storefront_kit::{
    Error, Json,
    auth::{CurrentUser, RequireAdmin},
    error::{Path, Query},
    validate::paging,
};
use uuid::Uuid;

use crate::{
    AppState,
    domain::{Fields, MAX_LINES, MAX_ORDER_TOTAL, MAX_QUANTITY, OrderState},
    pricing::{Priced, PricingLine, PricingRequest, PricingSource},
    store::{LineDoc, NotPayable, OrderDoc, RefundStatus, Step, StoreError, at},
};

pub const MAX_KEY_CHARS: usize = 100;
/// The longest a request waits for an order to change (below the server's request timeout).
pub const MAX_WAIT_SECS: u64 = 10;

/// One line of an order: a snapshot of the product's title and price when it was placed.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderLineView")]
pub struct LineView {
    product_id: String,
    title: String,
    unit_price: Money,
    quantity: i64,
    /// `unit_price` × `quantity`.
    line_total: Money,
}

/// Where an order's charges came from.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderPricingView")]
pub struct PricingView {
    /// `function`, or `fallback` (the built-in rules, because the function did not answer
    /// usefully).
    source: PricingSource,
    /// Why the fallback priced it (with `source: fallback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_reason: Option<String>,
}

impl PricingView {
    fn of(priced: &Priced) -> Self {
        PricingView {
            source: priced.source,
            fallback_reason: priced.fallback_reason.clone(),
        }
    }
}

impl LineView {
    fn of(l: &LineDoc) -> Self {
        LineView {
            product_id: l.product_id.clone(),
            title: l.title.clone(),
            unit_price: l.unit_price.clone(),
            quantity: l.quantity,
            line_total: Money {
                amount: l.line_total,
                currency: l.unit_price.currency.clone(),
            },
        }
    }
}

/// The money received for an order.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderPaymentView")]
pub struct PaymentView {
    amount: Money,
    paid_at: DateTime<Utc>,
}

/// Money that arrived after the order ended unpaid, on its way back.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderRefundView")]
pub struct RefundView {
    status: RefundStatus,
    amount: Money,
    reason: String,
    due_at: DateTime<Utc>,
    /// When Stripe confirmed it (with `status: refunded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded_at: Option<DateTime<Utc>>,
}

/// An order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OrderView {
    id: Uuid,
    /// The number a customer reads ("Order 1042"): unique in the shop, growing. Absent on orders
    /// placed before orders had numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<i64>,
    /// Its customer.
    user_id: Uuid,
    state: OrderState,
    /// Why it was cancelled (on cancelled orders).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    lines: Vec<LineView>,
    /// The lines' sum.
    subtotal: Money,
    /// Shipping, fees, tax, discounts on top of the lines.
    charges: Vec<PriceLine>,
    /// What the order costs: `subtotal` + every charge.
    total: Money,
    /// Where the charges came from (absent on orders placed before pricing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<PricingView>,
    /// Raised by every visible change; the `ETag` of `GET /api/orders/{id}`.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Until when an open order can be paid.
    expires_at: DateTime<Utc>,
    /// While a payment is with Stripe: until when a cancel waits for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    paying_until: Option<DateTime<Utc>>,
    /// The money received.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment: Option<PaymentView>,
    /// Money received after the order ended unpaid, and where its way back is.
    #[serde(skip_serializing_if = "Option::is_none")]
    refund: Option<RefundView>,
}

impl From<&OrderDoc> for OrderView {
    fn from(order: &OrderDoc) -> Self {
        let now = mongodb::bson::DateTime::now();
        OrderView {
            number: order.number,
            paying_until: order
                .paying_until
                .filter(|_| order.is_held(now))
                .map(|t| t.to_chrono()),
            payment: order.payment.as_ref().map(|p| PaymentView {
                amount: p.amount.clone(),
                paid_at: p.paid_at.to_chrono(),
            }),
            refund: order.refund.as_ref().map(|r| RefundView {
                status: r.status,
                amount: r.amount.clone(),
                reason: r.reason.clone(),
                due_at: r.due_at.to_chrono(),
                refunded_at: r.refunded_at.map(|t| t.to_chrono()),
            }),
            id: order.uuid(),
            user_id: order.user(),
            state: order.state,
            reason: order.reason.clone(),
            lines: order.lines.iter().map(LineView::of).collect(),
            subtotal: Money {
                amount: order.lines.iter().map(|l| l.line_total).sum(),
                currency: order.total.currency.clone(),
            },
            charges: order.charges(),
            total: order.total.clone(),
            pricing: order.pricing.as_ref().map(PricingView::of),
            version: order.version,
            created_at: order.created_at.to_chrono(),
            updated_at: order.updated_at.to_chrono(),
            expires_at: order.expires_at.to_chrono(),
        }
    }
}

/// A product and how many of it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OrderLineBody")]
pub struct LineBody {
    /// A product sold here.
    #[schemars(with = "Uuid")]
    product_id: String,
    /// 1 to 100 (lines naming one product twice are merged, and the sum counts).
    #[schemars(range(min = 1, max = MAX_QUANTITY))]
    quantity: i64,
}

/// The lines to order (or to quote); prices come from the shop, never from the client.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OrderLinesBody")]
pub struct PlaceBody {
    /// 1 to 50 lines, in one currency.
    #[schemars(length(min = 1, max = MAX_LINES))]
    lines: Vec<LineBody>,
}

/// The `Idempotency-Key` header: 1 to 100 visible ASCII characters, or absent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadRequest(format!(
            "Idempotency-Key is 1 to {MAX_KEY_CHARS} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// Checks the lines and merges repeats: product id → quantity, in a stable order.
fn requested(body: &PlaceBody) -> Result<BTreeMap<Uuid, i64>, Error> {
    let mut fields = Fields::default();
    if body.lines.is_empty() {
        fields.add("lines", "an order has at least one line");
    }
    if body.lines.len() > MAX_LINES {
        fields.add("lines", format!("an order has at most {MAX_LINES} lines"));
    }
    let mut merged = BTreeMap::new();
    for (i, line) in body.lines.iter().enumerate() {
        let id = fields.check(
            &format!("lines[{i}].product_id"),
            line.product_id
                .parse::<Uuid>()
                .map_err(|_| "not a product id".to_owned()),
        );
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            fields.add(
                format!("lines[{i}].quantity"),
                format!("between 1 and {MAX_QUANTITY}"),
            );
        }
        if let Some(id) = id {
            *merged.entry(id).or_insert(0) += line.quantity;
        }
    }
    fields.finish()?;
    if let Some((id, _)) = merged.iter().find(|(_, q)| **q > MAX_QUANTITY) {
        return Err(Error::field(
            "lines",
            format!("at most {MAX_QUANTITY} of product {id} in one order"),
        ));
    }
    Ok(merged)
}

fn created(order: &OrderDoc) -> Response {
    let mut response = (StatusCode::CREATED, Json(OrderView::from(order))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{}", order.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The lines of `merged`, priced from orders' product replica (never from the client), and
/// their one currency.
async fn lines_of(
    state: &AppState,
    merged: &BTreeMap<Uuid, i64>,
) -> Result<(Vec<LineDoc>, String), Error> {
    let ids: Vec<String> = merged.keys().map(Uuid::to_string).collect();
    let known = state.store.products(&ids).await?;
    let mut fields = Fields::default();
    let mut lines = Vec::with_capacity(merged.len());
    for (id, quantity) in merged {
        match known.iter().find(|p| p.id == id.to_string()) {
            Some(p) if !p.deleted => lines.push(LineDoc {
                product_id: p.id.clone(),
                title: p.title.clone(),
                unit_price: p.price.clone(),
                quantity: *quantity,
                line_total: p.price.amount * quantity,
            }),
            _ => fields.add("lines", format!("product {id} is not sold here")),
        }
    }
    fields.finish()?;
    let currency = lines[0].unit_price.currency.clone();
    if lines.iter().any(|l| l.unit_price.currency != currency) {
        return Err(Error::field(
            "lines",
            "an order is in one currency; these products are priced in several",
        ));
    }
    Ok((lines, currency))
}

/// 422 for an amount above what one payment can take (Stripe's ceiling), before anyone pays.
fn within_one_payment(amount: &Money) -> Result<(), Error> {
    if amount.amount <= MAX_ORDER_TOTAL {
        return Ok(());
    }
    Err(Error::field(
        "total",
        format!(
            "{amount} is more than one payment can take (at most {}); order fewer items",
            Money {
                amount: MAX_ORDER_TOTAL,
                currency: amount.currency.clone()
            },
        ),
    ))
}

/// Prices `lines` through the pricing function (the fallback when it does not answer usefully).
async fn priced(
    state: &AppState,
    order_id: Option<Uuid>,
    user: Uuid,
    lines: &[LineDoc],
    currency: &str,
) -> Result<Priced, Error> {
    let money = |amount| Money {
        amount,
        currency: currency.to_owned(),
    };
    let subtotal = money(lines.iter().map(|l| l.line_total).sum());
    within_one_payment(&subtotal)?;
    let request = PricingRequest {
        order_id,
        user_id: user,
        currency: currency.to_owned(),
        lines: lines
            .iter()
            .map(|l| PricingLine {
                product_id: l.product_id.clone(),
                title: l.title.clone(),
                unit_price: l.unit_price.clone(),
                quantity: l.quantity,
                line_total: money(l.line_total),
            })
            .collect(),
        subtotal,
    };
    let priced = state.pricing.price(&request).await;
    within_one_payment(&priced.total)?;
    Ok(priced)
}

/// `POST /api/orders`: priced from orders' product replica, never from the client, and through
/// the pricing function (shipping, fees, tax), whose answer is recorded on the order. With an
/// `Idempotency-Key`, the same key again returns the same order.
pub async fn place(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Json(body): Json<PlaceBody>,
) -> Result<Response, Error> {
    let key = idempotency_key(&headers)?;
    let merged = requested(&body)?;
    let (lines, currency) = lines_of(&state, &merged).await?;
    let id = Uuid::now_v7();
    let pricing = priced(&state, Some(id), user.sub, &lines, &currency).await?;
    // Taken before the idempotency check: a retry with the same key leaves one number unused.
    let number = state.store.next_number().await?;
    let now = Utc::now();
    let window = chrono::Duration::from_std(state.payment_window).map_err(Error::internal)?;
    let order = OrderDoc {
        id: id.to_string(),
        user_id: user.sub.to_string(),
        lines,
        total: pricing.total.clone(),
        state: OrderState::Pending,
        reason: None,
        number: Some(number),
        version: 1,
        created_at: at(now),
        updated_at: at(now),
        expires_at: at(now + window),
        idempotency_key: key.clone(),
        paying_until: None,
        payment: None,
        refund: None,
        pricing: Some(pricing),
    };
    let fingerprint = {
        let mut hash = Sha256::new();
        for (id, quantity) in &merged {
            hash.update(format!("{id}:{quantity};"));
        }
        format!("{:x}", hash.finalize())
    };
    let (order, _new) = state
        .store
        .place(&order, key.as_deref().map(|k| (k, fingerprint.as_str())))
        .await?;
    Ok(created(&order))
}

/// What lines would cost as an order now; nothing is placed.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OrderQuoteView")]
pub struct QuoteView {
    lines: Vec<LineView>,
    /// The lines' sum.
    subtotal: Money,
    /// Shipping, fees, tax, discounts on top of the lines.
    charges: Vec<PriceLine>,
    /// `subtotal` + every charge.
    total: Money,
    pricing: PricingView,
}

/// `POST /api/orders/quote`: what these lines would cost as an order now — the same pricing as
/// `POST /api/orders`, nothing placed (the cart shows it).
pub async fn quote(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<PlaceBody>,
) -> Result<Json<QuoteView>, Error> {
    let merged = requested(&body)?;
    let (lines, currency) = lines_of(&state, &merged).await?;
    let pricing = priced(&state, None, user.sub, &lines, &currency).await?;
    Ok(Json(QuoteView {
        lines: lines.iter().map(LineView::of).collect(),
        subtotal: pricing.subtotal.clone(),
        charges: pricing.charges.clone(),
        total: pricing.total.clone(),
        pricing: PricingView::of(&pricing),
    }))
}

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

/// A page of orders, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OrderList {
    items: Vec<OrderView>,
    page: u64,
    per_page: u64,
    /// How many orders match, on every page.
    total: u64,
}

async fn list(
    state: &AppState,
    user: Option<Uuid>,
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

/// An order the caller may see: their own, or any for an admin. Anything else is not found.
async fn visible(
    state: &AppState,
    user: &storefront_kit::auth::Claims,
    id: &str,
) -> Result<OrderDoc, Error> {
    let missing = || Error::NotFound("no such order".into());
    let id: Uuid = id.parse().map_err(|_| missing())?;
    match state.store.get(id).await? {
        Some(order) if order.user_id == user.sub.to_string() || user.is_admin() => Ok(order),
        _ => Err(missing()),
    }
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
    let mut order = visible(&state, &user, &id).await?;
    let known = known_version(&headers);
    if wait > 0 && known == Some(order.version) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
        let seen = order.version;
        order = state
            .store
            .wait_for(order.uuid(), deadline, |o| o.version != seen)
            .await?
            .ok_or_else(|| Error::NotFound("no such order".into()))?;
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
    let wait = wait_secs(&query)?;
    let missing = || Error::NotFound("no such order".into());
    let id: Uuid = id.parse().map_err(|_| missing())?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    let owner = user.sub.to_string();
    match state.store.get(id).await? {
        Some(order) if order.user_id == owner => {}
        _ => return Err(missing()),
    }
    loop {
        match state
            .store
            .hold_for_payment(id, user.sub, state.payment_hold)
            .await
        {
            Ok(Ok(order)) => return Ok(Json(OrderView::from(&order))),
            Ok(Err(NotPayable::Pending)) if tokio::time::Instant::now() < deadline => {
                state
                    .store
                    .wait_for(id, deadline, |o| o.state != OrderState::Pending)
                    .await?;
            }
            Ok(Err(NotPayable::Pending)) => {
                return Err(Error::Conflict {
                    kind: "order-not-payable",
                    detail: "the order's stock is still being reserved; try again in a moment"
                        .into(),
                });
            }
            Ok(Err(NotPayable::Paid)) => {
                return Err(Error::Conflict {
                    kind: "already-paid",
                    detail: "this order is paid already".into(),
                });
            }
            Ok(Err(NotPayable::Ended(detail))) => {
                return Err(Error::Conflict {
                    kind: "order-not-payable",
                    detail,
                });
            }
            Err(StoreError::NotFound) => return Err(missing()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// `POST /api/orders/{id}/cancel`: only before payment (409 `payment-in-progress` while payments
/// holds it); the stock is released.
pub async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Error> {
    let order = visible(&state, &user, &id).await?;
    let reason = if order.user_id == user.sub.to_string() {
        "cancelled by the customer"
    } else {
        "cancelled by an admin"
    };
    let order = state
        .store
        .advance(
            order.uuid(),
            Step::Cancelled {
                reason: reason.into(),
            },
        )
        .await?;
    Ok(Json(OrderView::from(&order)))
}
