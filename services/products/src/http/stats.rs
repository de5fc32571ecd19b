//! `GET /api/products/admin/stats`: how often customers looked at the catalog, by day, and the
//! most viewed products (admins; the dashboard's views and conversion figures).

use axum::extract::State;
use chrono::{NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use storefront_events::ProductId;
use storefront_kit::{Error, Json, auth::RequireAdmin, error::Query, validate::DaysQuery};

use crate::AppState;

/// How many products the answer ranks.
const TOP: usize = 10;

/// The catalog's views over the window.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ProductStats")]
pub struct Stats {
    /// The first day covered (`YYYY-MM-DD`, UTC).
    from: NaiveDate,
    /// The last day covered: today.
    until: NaiveDate,
    /// Views of every product in the window.
    views: i64,
    /// Every day of the window, oldest first.
    days: Vec<DayViews>,
    /// The ten most viewed products of the window, most first.
    top: Vec<ProductViews>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DayViews {
    day: NaiveDate,
    views: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductViews {
    product_id: ProductId,
    /// Its title now (a deleted product's last one).
    title: String,
    views: i64,
}

pub async fn show(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Query(query): Query<DaysQuery>,
) -> Result<Json<Stats>, Error> {
    let days = query.days()?;
    let today = Utc::now().date_naive();
    let stats = state.analytics.stats(today, days, TOP).await?;
    let ids: Vec<ProductId> = stats.top.iter().map(|(id, _)| *id).collect();
    let mut titles = state.analytics.titles(&ids).await?;
    Ok(Json(Stats {
        from: stats.days.first().map_or(today, |(d, _)| *d),
        until: today,
        views: stats.total,
        days: stats
            .days
            .into_iter()
            .map(|(day, views)| DayViews { day, views })
            .collect(),
        top: stats
            .top
            .into_iter()
            .map(|(product_id, views)| ProductViews {
                title: titles.remove(&product_id).unwrap_or_default(),
                product_id,
                views,
            })
            .collect(),
    }))
}
