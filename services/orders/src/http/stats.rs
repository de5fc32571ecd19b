//! `GET /api/orders/admin/stats`: the shop's sales per day (admins; the dashboard).

use axum::extract::State;
use chrono::Utc;
use storefront_kit::{Error, Json, auth::RequireAdmin, error::Query, validate::DaysQuery};

use crate::{
    AppState,
    stats::{Sales, summarise, window_start},
};

pub async fn show(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Query(query): Query<DaysQuery>,
) -> Result<Json<Sales>, Error> {
    let days = query.days()?;
    let today = Utc::now().date_naive();
    let orders = state.store.placed_since(window_start(today, days)).await?;
    Ok(Json(summarise(today, days, &orders)))
}
