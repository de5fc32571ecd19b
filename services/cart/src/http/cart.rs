//! Show, add, change, remove, check out.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::{
    Money, ProductId, UserId,
    orders::{OrderState, PlaceOrder, PlacedOrder, PriceLine},
    products::LineQuantity,
};
use storefront_kit::telemetry::propagate;
use storefront_kit::{
    Error, Json,
    auth::{ActingUser, CurrentUser},
    error::Path,
};

use crate::{
    AppState,
    store::{CartDoc, Checkout, Item, MAX_ITEMS, MAX_QUANTITY, UNPLACED_HOLD_MINUTES},
};

#[derive(Debug, Serialize, JsonSchema)]
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

/// Lines a checkout took out of the cart, until its order ends.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HeldView {
    /// The order they are in (absent for a moment while it is being placed).
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    /// How many items.
    count: i64,
}

/// What the orderable lines would cost as an order now: orders' quote, through the shop's
/// pricing function (shipping, fees, tax).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Estimate {
    charges: Vec<PriceLine>,
    total: Money,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CartView {
    items: Vec<LineView>,
    /// The sum of the orderable lines.
    subtotal: Option<Money>,
    /// The orderable lines as an order: `subtotal` plus shipping, fees and tax. Absent when
    /// nothing is orderable, or orders cannot quote right now.
    estimate: Option<Estimate>,
    /// How many items in all (for a cart badge).
    count: i64,
    /// The cart's version: rises with every write (the live count a page gets says the version
    /// it counts, so the page keeps the newest).
    version: i64,
    /// Checked out, in orders not paid or cancelled yet.
    held: Vec<HeldView>,
}

async fn view(state: &AppState, cart: &CartDoc, token: &str) -> Result<CartView, Error> {
    let ids: Vec<ProductId> = cart.items.iter().map(|i| i.product_id).collect();
    let known = state.store.products(&ids).await?;
    let mut subtotal: Option<Money> = None;
    let items: Vec<LineView> = cart
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
                product_id: item.product_id.to_string(),
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
    let estimate = estimate(state, cart, &items, token).await;
    Ok(CartView {
        items,
        subtotal,
        estimate,
        count: cart.count(),
        version: cart.version,
        held: cart
            .checkouts
            .iter()
            .map(|c| HeldView {
                order_id: c.order_id.map(|id| id.to_string()),
                count: c.items.iter().map(|i| i.quantity).sum(),
            })
            .collect(),
    })
}

/// How long the cart waits for orders' quote before it shows the cart without one.
const QUOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// orders' quote for the orderable lines, or `None` (nothing orderable; orders not answering).
async fn estimate(
    state: &AppState,
    cart: &CartDoc,
    lines: &[LineView],
    token: &str,
) -> Option<Estimate> {
    // The view's lines are the cart's items, in order.
    let orderable: Vec<LineQuantity> = cart
        .items
        .iter()
        .zip(lines)
        .filter(|(_, line)| line.orderable)
        .map(|(item, _)| item.line())
        .collect();
    if orderable.is_empty() {
        return None;
    }
    let answer = propagate(
        state
            .http
            .post(format!("{}/api/orders/quote", state.orders_url)),
    )
    .bearer_auth(token)
    .timeout(QUOTE_TIMEOUT)
    .json(&PlaceOrder { lines: orderable })
    .send()
    .await;
    match answer {
        Ok(answer) if answer.status().is_success() => answer.json().await.ok(),
        Ok(answer) => {
            tracing::debug!(status = %answer.status(), "no quote for the cart");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "orders did not quote the cart");
            None
        }
    }
}

/// Whether a hold never learned its order in time (see `CartDoc::release_unplaced`).
fn has_unplaced_holds(cart: &CartDoc) -> bool {
    let limit = chrono::Utc::now() - chrono::Duration::minutes(UNPLACED_HOLD_MINUTES);
    cart.checkouts
        .iter()
        .any(|c| c.order_id.is_none() && c.held_at.to_chrono() < limit)
}

pub async fn show(
    State(state): State<AppState>,
    acting: ActingUser,
) -> Result<Json<CartView>, Error> {
    let user = &acting.claims;
    let mut cart = state.store.cart(user.sub).await?;
    if has_unplaced_holds(&cart) {
        cart = state
            .store
            .update(user.sub, |cart| {
                cart.release_unplaced(mongodb::bson::DateTime::now());
                Ok::<_, Error>(())
            })
            .await?
            .1;
    }
    Ok(Json(view(&state, &cart, &acting.token).await?))
}

#[derive(Debug, Deserialize, JsonSchema)]
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
    acting: ActingUser,
    Json(body): Json<AddBody>,
) -> Result<Json<CartView>, Error> {
    let user = &acting.claims;
    let quantity = quantity(body.quantity)?;
    let id: ProductId = body
        .product_id
        .parse()
        .map_err(|_| Error::field("product_id", "not a product id"))?;
    let sold = state
        .store
        .products(&[id])
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
                    product_id: id,
                    quantity,
                }),
            }
            Ok(())
        })
        .await?;
    Ok(Json(view(&state, &cart, &acting.token).await?))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuantityBody {
    quantity: i64,
}

fn not_in_cart() -> Error {
    Error::NotFound("this product is not in the cart".into())
}

pub async fn set_quantity(
    State(state): State<AppState>,
    acting: ActingUser,
    Path(product_id): Path<String>,
    Json(body): Json<QuantityBody>,
) -> Result<Json<CartView>, Error> {
    let user = &acting.claims;
    let quantity = quantity(body.quantity)?;
    // A path that is not a product id names no line: 404 like any other.
    let product_id = product_id.parse::<ProductId>().ok();
    let (_, cart) = state
        .store
        .update(user.sub, |cart| {
            let item = cart
                .items
                .iter_mut()
                .find(|i| Some(i.product_id) == product_id)
                .ok_or_else(not_in_cart)?;
            item.quantity = quantity;
            Ok::<_, Error>(())
        })
        .await?;
    Ok(Json(view(&state, &cart, &acting.token).await?))
}

pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(product_id): Path<String>,
) -> Result<StatusCode, Error> {
    let product_id = product_id.parse::<ProductId>().ok();
    state
        .store
        .update(user.sub, |cart| {
            let before = cart.items.len();
            cart.items.retain(|i| Some(i.product_id) != product_id);
            if cart.items.len() == before {
                return Err(not_in_cart());
            }
            Ok::<_, Error>(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/cart/checkout` with `Idempotency-Key`: the cart's lines are *held* first (they
/// leave the cart in one version-guarded write, so nothing can order them twice), then orders
/// places them as an order (priced by orders, never by the cart) and its answer comes back as it
/// is. The same key again is the same checkout: its hold, and orders' same order.
///
/// A line the cart itself shows as not orderable (the product is gone, or less is available than
/// it asks for) is refused up front, 422 by its line, and the held lines go back into the cart:
/// no order is placed only to be cancelled a moment later. The saga still decides for what passes
/// (this is the cart's copy of the stock, a moment old).
async fn refuse_what_cannot_be_ordered(
    state: &AppState,
    customer: UserId,
    key: &str,
    items: &[crate::store::Item],
) -> Result<(), Error> {
    let ids: Vec<ProductId> = items.iter().map(|i| i.product_id).collect();
    let known = state.store.products(&ids).await?;
    let mut fields = storefront_kit::validate::Fields::default();
    for (index, item) in items.iter().enumerate() {
        match known.iter().find(|p| p.id == item.product_id && !p.deleted) {
            None => fields.add(
                format!("items[{index}]"),
                format!("product {} is no longer sold", item.product_id),
            ),
            Some(p) if p.available < item.quantity => fields.add(
                format!("items[{index}].quantity"),
                format!(
                    "only {} of {} available; lower the quantity",
                    p.available.max(0),
                    p.title
                ),
            ),
            Some(_) => {}
        }
    }
    let Err(refused) = fields.finish() else {
        return Ok(());
    };
    give_back_unplaced(state, customer, key).await?;
    Err(refused)
}

/// Puts a hold's lines back into the cart while no order holds them (refused before or by
/// orders).
async fn give_back_unplaced(state: &AppState, customer: UserId, key: &str) -> Result<(), Error> {
    state
        .store
        .update(customer, |cart| {
            if cart
                .checkouts
                .iter()
                .any(|c| c.key == key && c.order_id.is_none())
            {
                cart.release(key);
            }
            Ok::<_, Error>(())
        })
        .await?;
    Ok(())
}

/// What becomes of the held lines: a refusal of orders (4xx) puts them back at once; an order
/// that completes keeps them out; an order that is cancelled puts them back (cart consumes
/// `order.cancelled`). When orders does not answer they stay held for this key (retry with it);
/// `order.created` tells the hold its order even then, and a hold that never learns one gives
/// its lines back after [`UNPLACED_HOLD_MINUTES`].
pub async fn checkout(
    State(state): State<AppState>,
    user: ActingUser,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| Error::BadRequest("checkout needs an Idempotency-Key header (a new one per checkout, the same one when retrying)".into()))?
        .to_str()
        .map(|k| k.trim().to_owned())
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 100 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| Error::BadRequest("Idempotency-Key is 1 to 100 visible ASCII characters".into()))?;
    let customer = user.claims.sub;
    let (hold, _) = state
        .store
        .update(customer, |cart| {
            cart.release_unplaced(mongodb::bson::DateTime::now());
            if let Some(hold) = cart.checkouts.iter().find(|c| c.key == key) {
                return Ok(hold.clone());
            }
            if cart.items.is_empty() {
                return Err(Error::field("items", "the cart is empty"));
            }
            let hold = Checkout {
                key: key.clone(),
                order_id: None,
                items: std::mem::take(&mut cart.items),
                held_at: mongodb::bson::DateTime::now(),
            };
            cart.checkouts.push(hold.clone());
            Ok(hold)
        })
        .await?;
    if hold.order_id.is_none() {
        refuse_what_cannot_be_ordered(&state, customer, &key, &hold.items).await?;
    }
    let placing = PlaceOrder {
        lines: hold.items.iter().map(Item::line).collect(),
    };
    let answer = propagate(state.http.post(format!("{}/api/orders", state.orders_url)))
        .bearer_auth(&user.token)
        .header("idempotency-key", &key)
        .json(&placing)
        .send()
        .await
        .map_err(|e| {
            Error::Unavailable(format!(
                "orders did not answer ({e}); your lines are kept for this checkout: retry with the same Idempotency-Key"
            ))
        })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(Error::internal)?;
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    let body = answer.bytes().await.map_err(|e| {
        Error::Unavailable(format!(
            "orders' answer was cut off ({e}); retry with the same Idempotency-Key"
        ))
    })?;
    if status.is_success() {
        let PlacedOrder {
            id: order_id,
            state: order_state,
        } = serde_json::from_slice(&body).map_err(Error::internal)?;
        state
            .store
            .update(customer, |cart| {
                let Some(hold) = cart.checkouts.iter_mut().find(|c| c.key == key) else {
                    // Its order ended meanwhile and the consumer settled the hold.
                    return Ok::<_, Error>(());
                };
                let in_this_order = hold.order_id == Some(order_id);
                match order_state {
                    OrderState::Pending | OrderState::AwaitingPayment => {
                        if hold.order_id.is_none() {
                            hold.order_id = Some(order_id);
                        }
                    }
                    // Bought (a retry after the payment): the lines stay out.
                    OrderState::Completed if in_this_order => {
                        cart.checkouts.retain(|c| c.key != key);
                    }
                    // Cancelled, or a key reused after its order ended, which gives back that
                    // order: these lines are not bought.
                    _ => {
                        cart.release(&key);
                    }
                }
                Ok(())
            })
            .await?;
    } else if status.is_client_error() && hold.order_id.is_none() {
        // orders refused: no order holds these lines.
        give_back_unplaced(&state, customer, &key).await?;
    }
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}
