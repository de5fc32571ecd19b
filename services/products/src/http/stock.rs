//! `/api/products/{id}/stock`: an admin sets or adjusts stock with a reason, and reads the ledger.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::products::{Stock, StockMovement};
use storefront_kit::{Error, Json, auth::RequireAdmin, error::Path};

use super::views::{if_match, json, product_id, render};
use crate::{
    AppState,
    domain::{Fields, StockChange, StockReason},
    store::{Change, LedgerEntry, StoreError},
};

/// Ledger entries the stock view shows.
const LEDGER_ENTRIES: i64 = 50;

/// An admin's stock change: exactly one of `set` and `adjust`, with a reason.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "StockChangeBody")]
pub struct ChangeBody {
    /// The new available quantity, 0 to 1,000,000…
    set: Option<i64>,
    /// …or a signed, non-zero change of it (at most 1,000,000 either way). Stock never goes
    /// below zero nor above 1,000,000 (409).
    adjust: Option<i64>,
    /// Why, for the stock ledger: 1 to 200 characters, no control characters.
    reason: String,
}

/// `If-Match` is optional here: an adjustment composes with concurrent ones; send it with `set`
/// to be sure the quantity you overwrite is the one you saw.
pub async fn change(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ChangeBody>,
) -> Result<Response, Error> {
    let id = product_id(&id)?;
    let mut fields = Fields::default();
    let change = fields.check("set", StockChange::parse(body.set, body.adjust));
    let reason = fields.check("reason", StockReason::parse(&body.reason));
    fields.finish()?;
    let expect = if_match(&headers, false)?;
    let (Some(change), Some(reason)) = (change, reason) else {
        return Err(Error::internal("validated fields missing"));
    };
    let reason = reason.into_inner();
    let actor = admin.sub.to_string();
    let product = state
        .store
        .modify(id, expect, |product| {
            let delta = change
                .delta(product.stock.available)
                .map_err(StoreError::Invalid)?;
            product.stock.available += delta;
            Ok(Change::Stock {
                movement: StockMovement::Adjusted,
                delta,
                reason: Some(reason.clone()),
                actor: Some(actor.clone()),
            })
        })
        .await?;
    state.cache.invalidate(id);
    let rendered = render(&product)?;
    Ok(json(StatusCode::OK, rendered.body, Some(&rendered.etag)))
}

/// A product's stock and its latest movements (admins only).
#[derive(Debug, Serialize, JsonSchema)]
pub struct StockView {
    stock: Stock,
    /// The product's version (its `ETag` is `"v{version}"`).
    version: i64,
    /// The 50 newest movements, newest first.
    ledger: Vec<LedgerEntryView>,
}

/// One stock movement.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "StockLedgerEntry")]
pub struct LedgerEntryView {
    /// The entry's id.
    id: String,
    movement: StockMovement,
    /// The signed change of `available`.
    delta: i64,
    /// The stock after the movement.
    stock: Stock,
    /// The product's version after the movement.
    version: i64,
    /// The order of a saga's movement (`reserved`, `released`, `sold`).
    order_id: Option<String>,
    /// An adjustment's reason.
    reason: Option<String>,
    /// The admin behind an adjustment.
    actor: Option<String>,
    /// When (RFC 3339, UTC).
    at: chrono::DateTime<chrono::Utc>,
}

impl From<LedgerEntry> for LedgerEntryView {
    fn from(entry: LedgerEntry) -> Self {
        LedgerEntryView {
            id: entry.id,
            movement: entry.movement,
            delta: entry.delta,
            stock: entry.stock,
            version: entry.version,
            order_id: entry.order_id,
            reason: entry.reason,
            actor: entry.actor,
            at: entry.at.to_chrono(),
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Path(id): Path<String>,
) -> Result<Json<StockView>, Error> {
    let id = product_id(&id)?;
    let product = state
        .store
        .get(id)
        .await?
        .ok_or_else(|| Error::NotFound("no such product".into()))?;
    let ledger = state.store.ledger(id, LEDGER_ENTRIES).await?;
    Ok(Json(StockView {
        stock: product.stock,
        version: product.version,
        ledger: ledger.into_iter().map(LedgerEntryView::from).collect(),
    }))
}
