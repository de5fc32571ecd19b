//! Show, add, change, remove, check out.

use axum::{
    extract::{FromRequestParts, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storefront_events::Money;
use storefront_kit::{
    Error, Json,
    auth::{CurrentUser, access_token},
    error::Path,
};
use uuid::Uuid;

use crate::{
    AppState,
    store::{CartDoc, Checkout, Item},
};

/// Most of one product in a cart (the same bound as an order line).
pub const MAX_QUANTITY: i64 = 100;
/// Most distinct products in a cart (an order's line limit).
pub const MAX_ITEMS: usize = 50;

#[derive(Debug, Serialize)]
pub struct LineView {
    product_id: String,
    title: String,
    unit_price: Option<Money>,
    quantity: i64,
    line_total: Option<Money>,
    /// The primary image's key (`GET /api/products/{id}` has its URL).
    image: Option<String>,
    available: i64,
    /// Whether this line can be ordered as it is: the product is sold and enough is available.
    orderable: bool,
}

#[derive(Debug, Serialize)]
pub struct CartView {
    items: Vec<LineView>,
    /// The sum of the orderable lines.
    subtotal: Option<Money>,
    /// How many items in all (for a cart badge).
    count: i64,
}

async fn view(state: &AppState, cart: &CartDoc) -> Result<CartView, Error> {
    let ids: Vec<String> = cart.items.iter().map(|i| i.product_id.clone()).collect();
    let known = state.store.products(&ids).await?;
    let mut subtotal: Option<Money> = None;
    let items = cart
        .items
        .iter()
        .map(|item| {
            let product = known.iter().find(|p| p.id == item.product_id && !p.deleted);
            let orderable = product.is_some_and(|p| p.available >= item.quantity);
            let line_total = product.map(|p| Money {
                amount: p.price.amount * item.quantity,
                currency: p.price.currency.clone(),
            });
            if orderable && let Some(total) = &line_total {
                match &mut subtotal {
                    Some(sum) if sum.currency == total.currency => sum.amount += total.amount,
                    Some(_) => {}
                    None => subtotal = Some(total.clone()),
                }
            }
            LineView {
                product_id: item.product_id.clone(),
                title: product.map(|p| p.title.clone()).unwrap_or_default(),
                unit_price: product.map(|p| p.price.clone()),
                quantity: item.quantity,
                line_total,
                image: product.and_then(|p| p.image.clone()),
                available: product.map_or(0, |p| p.available),
                orderable,
            }
        })
        .collect();
    Ok(CartView {
        items,
        subtotal,
        count: cart.items.iter().map(|i| i.quantity).sum(),
    })
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<CartView>, Error> {
    let cart = state.store.cart(user.sub).await?;
    Ok(Json(view(&state, &cart).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    product_id: String,
    quantity: i64,
}

fn quantity(value: i64) -> Result<i64, Error> {
    if (1..=MAX_QUANTITY).contains(&value) {
        Ok(value)
    } else {
        Err(Error::field(
            "quantity",
            format!("between 1 and {MAX_QUANTITY}"),
        ))
    }
}

pub async fn add(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<AddBody>,
) -> Result<Json<CartView>, Error> {
    let quantity = quantity(body.quantity)?;
    let product_id: Uuid = body
        .product_id
        .parse()
        .map_err(|_| Error::field("product_id", "not a product id"))?;
    let id = product_id.to_string();
    let sold = state
        .store
        .products(std::slice::from_ref(&id))
        .await?
        .into_iter()
        .any(|p| !p.deleted);
    if !sold {
        return Err(Error::field("product_id", "this product is not sold here"));
    }
    let (_, cart) = state
        .store
        .update(user.sub, |cart| {
            let distinct = cart.items.len();
            match cart.items.iter_mut().find(|i| i.product_id == id) {
                Some(item) if item.quantity + quantity > MAX_QUANTITY => {
                    return Err(Error::field(
                        "quantity",
                        format!("at most {MAX_QUANTITY} of one product in a cart"),
                    ));
                }
                Some(item) => item.quantity += quantity,
                None if distinct >= MAX_ITEMS => {
                    return Err(Error::field(
                        "product_id",
                        format!("a cart holds at most {MAX_ITEMS} different products"),
                    ));
                }
                None => cart.items.push(Item {
                    product_id: id.clone(),
                    quantity,
                }),
            }
            Ok(())
        })
        .await?;
    Ok(Json(view(&state, &cart).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantityBody {
    quantity: i64,
}

fn not_in_cart() -> Error {
    Error::NotFound("this product is not in the cart".into())
}

pub async fn set_quantity(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(product_id): Path<String>,
    Json(body): Json<QuantityBody>,
) -> Result<Json<CartView>, Error> {
    let quantity = quantity(body.quantity)?;
    let (_, cart) = state
        .store
        .update(user.sub, |cart| {
            let item = cart
                .items
                .iter_mut()
                .find(|i| i.product_id == product_id)
                .ok_or_else(not_in_cart)?;
            item.quantity = quantity;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(Json(view(&state, &cart).await?))
}

pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(product_id): Path<String>,
) -> Result<StatusCode, Error> {
    state
        .store
        .update(user.sub, |cart| {
            let before = cart.items.len();
            cart.items.retain(|i| i.product_id != product_id);
            if cart.items.len() == before {
                return Err(not_in_cart());
            }
            Ok::<_, Error>(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own access token, to forward to orders.
pub struct Token(String);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        access_token(parts)
            .map(Token)
            .ok_or_else(|| Error::unauthenticated("sign in to check out"))
    }
}

/// `POST /api/cart/checkout` with `Idempotency-Key`: orders places the cart's lines as an order
/// (priced by orders, never by the cart) and its answer comes back as it is. The same key again
/// returns the same order.
pub async fn checkout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Token(token): Token,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let key = headers
        .get("idempotency-key")
        .cloned()
        .ok_or_else(|| Error::BadRequest("checkout needs an Idempotency-Key header (a new one per checkout, the same one when retrying)".into()))?;
    let cart = state.store.cart(user.sub).await?;
    if cart.items.is_empty() {
        return Err(Error::field("items", "the cart is empty"));
    }
    let lines: Vec<Value> = cart
        .items
        .iter()
        .map(|i| serde_json::json!({ "product_id": i.product_id, "quantity": i.quantity }))
        .collect();
    let answer = state
        .http
        .post(format!("{}/api/orders", state.orders_url))
        .bearer_auth(&token)
        .header("idempotency-key", key)
        .json(&serde_json::json!({ "lines": lines }))
        .send()
        .await
        .map_err(|e| Error::Unavailable(format!("orders: {e}")))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(Error::internal)?;
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    let body = answer
        .bytes()
        .await
        .map_err(|e| Error::Unavailable(format!("orders: {e}")))?;
    if status == StatusCode::CREATED {
        let order: Value = serde_json::from_slice(&body).map_err(Error::internal)?;
        let order_id = order["id"].as_str().unwrap_or_default().to_owned();
        let items = cart.items.clone();
        state
            .store
            .update(user.sub, |cart| {
                if !cart.checkouts.iter().any(|c| c.order_id == order_id) {
                    cart.checkouts.push(Checkout {
                        order_id: order_id.clone(),
                        items: items.clone(),
                    });
                }
                Ok::<_, Error>(())
            })
            .await?;
    }
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}
