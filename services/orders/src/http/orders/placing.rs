//! `POST /api/orders` and `POST /api/orders/quote`: the body's lines checked and merged, the
//! `Idempotency-Key` read, then `app::placing` places or quotes them.

use storefront_events::ProductId;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::{Money, orders::PriceLine};
use storefront_kit::{Error, Json, auth::CurrentUser, validate::IdempotencyKey};
use uuid::Uuid;

use super::views::{LineView, OrderView, PricingView};
use crate::{
    AppState,
    app::placing::{self, Requested},
    domain::{Fields, MAX_LINES, MAX_QUANTITY},
    store::OrderDoc,
};

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

/// Checks the lines and merges repeats: product id → quantity, in a stable order.
fn requested(body: &PlaceBody) -> Result<Requested, Error> {
    let mut fields = Fields::default();
    if body.lines.is_empty() {
        fields.add("lines", "an order has at least one line");
    }
    if body.lines.len() > MAX_LINES {
        fields.add("lines", format!("an order has at most {MAX_LINES} lines"));
    }
    let mut merged = Requested::new();
    for (i, line) in body.lines.iter().enumerate() {
        let id = fields.check(
            &format!("lines[{i}].product_id"),
            line.product_id
                .parse::<ProductId>()
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

/// `POST /api/orders`: priced from orders' product replica, never from the client, and through
/// the pricing function (shipping, fees, tax), whose answer is recorded on the order. With an
/// `Idempotency-Key`, the same key again returns the same order.
pub async fn place(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Json(body): Json<PlaceBody>,
) -> Result<Response, Error> {
    // After the body: a bad body is 400/413/415 whatever the key.
    let key = IdempotencyKey::of(&headers)?.map(|IdempotencyKey(key)| key);
    let requested = requested(&body)?;
    let order = placing::place_order(&state, user.sub, key, &requested).await?;
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
    let requested = requested(&body)?;
    let (lines, pricing) = placing::quote(&state, user.sub, &requested).await?;
    Ok(Json(QuoteView {
        lines: lines.iter().map(LineView::of).collect(),
        subtotal: pricing.subtotal.clone(),
        charges: pricing.charges.clone(),
        total: pricing.total.clone(),
        pricing: PricingView::of(&pricing),
    }))
}

#[cfg(test)]
mod tests {
    use storefront_events::{orders::PlaceOrder, products::LineQuantity};

    use super::*;

    /// What another service sends (`storefront_events::orders::PlaceOrder`, cart's checkout) is
    /// a body orders reads, line for line.
    #[test]
    fn the_shared_placing_contract_is_what_orders_reads() {
        let (mug, lamp) = (ProductId::new(), ProductId::new());
        let sent = PlaceOrder {
            lines: vec![
                LineQuantity {
                    product_id: mug,
                    quantity: 2,
                },
                LineQuantity {
                    product_id: lamp,
                    quantity: 1,
                },
                LineQuantity {
                    product_id: mug,
                    quantity: 1,
                },
            ],
        };
        let body: PlaceBody = serde_json::from_slice(&serde_json::to_vec(&sent).unwrap()).unwrap();
        let merged = requested(&body).unwrap();
        assert_eq!(merged, Requested::from([(mug, 3), (lamp, 1)]));
    }
}
