//! Show, add, change, remove, check out.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::{Money, ProductId, orders::PlaceOrder, products::LineQuantity};
use storefront_kit::{
    Error, Json,
    auth::{ActingUser, CurrentUser},
    error::Path,
    validate::IdempotencyKey,
};

use crate::{
    AppState,
    app::checkout,
    orders::Estimate,
    store::{CartDoc, Item, MAX_ITEMS, MAX_QUANTITY, UNPLACED_HOLD_MINUTES},
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
    state
        .orders
        .quote(token, &PlaceOrder { lines: orderable })
        .await
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

/// `POST /api/cart/checkout` with `Idempotency-Key`: the cart's lines held, placed by orders
/// (`app::checkout`), and orders' answer passed on as it came.
pub async fn checkout(
    State(state): State<AppState>,
    user: ActingUser,
    key: Option<IdempotencyKey>,
) -> Result<Response, Error> {
    let Some(IdempotencyKey(key)) = key else {
        return Err(Error::BadRequest(
            "checkout needs an Idempotency-Key header (a new one per checkout, the same one when \
             retrying)"
                .into(),
        ));
    };
    let answer = checkout::checkout(&state, &user, &key).await?;
    let mut response = (answer.status, answer.body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, answer.content_type);
    Ok(response)
}
