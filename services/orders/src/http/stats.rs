//! `GET /api/orders/admin/stats`: the shop's sales per day (admins; the dashboard).

use axum::extract::State;
use chrono::Utc;
use schemars::JsonSchema;
use serde::Deserialize;
use storefront_kit::{
    Error, Json,
    auth::RequireAdmin,
    error::Query,
    validate::{self, Fields},
};

use crate::{
    AppState,
    stats::{Sales, summarise, window_start},
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OrderStatsQuery")]
pub struct StatsQuery {
    /// The days covered, up to and including today (UTC): 1 to 90, default 30.
    #[schemars(extend("type" = ["integer", "null"], "minimum" = 1, "maximum" = 90))]
    days: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Query(query): Query<StatsQuery>,
) -> Result<Json<Sales>, Error> {
    let mut fields = Fields::default();
    let days = validate::days(query.days.as_deref(), &mut fields);
    fields.finish()?;
    let today = Utc::now().date_naive();
    let orders = state.store.placed_since(window_start(today, days)).await?;
    Ok(Json(summarise(today, days, &orders)))
}
