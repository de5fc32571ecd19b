//! `/api/products/{id}/stock`: an admin sets or adjusts stock with a reason, and reads the ledger.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// The new available quantity…
    set: Option<i64>,
    /// …or a signed change of it.
    adjust: Option<i64>,
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
    let expect = if_match(&headers, false)?;
    let mut fields = Fields::default();
    let change = fields.check("set", StockChange::parse(body.set, body.adjust));
    let reason = fields.check("reason", StockReason::parse(&body.reason));
    fields.finish()?;
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

#[derive(Debug, Serialize)]
pub struct StockView {
    stock: Stock,
    version: i64,
    /// The newest movements first.
    ledger: Vec<LedgerEntry>,
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
        ledger,
    }))
}
