//! `/admin`: the dashboard — orders and revenue per day, views of the catalog, conversion from
//! view to purchase, the products most viewed and most sold. Orders' and products' admin stats
//! (`GET /api/orders/admin/stats`, `GET /api/products/admin/stats`) feed it; the charts are SVG
//! drawn here, so the page needs no JavaScript. A service that does not answer leaves its part
//! of the page with a note, not the whole page an error.

use std::{collections::HashMap, fmt::Write};

use askama::Template;
use axum::{
    Extension,
    extract::{Query, State},
    response::Response,
};
use chrono::NaiveDate;
use serde::Deserialize;

use crate::{
    AppState,
    api::{SalesStats, ViewStats},
    pages::{Layout, PageError, admin_token, render},
    session::Visitor,
};

/// The windows the page offers, in days.
const WINDOWS: [u32; 3] = [7, 30, 90];

#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    #[serde(default)]
    days: String,
}

/// A product of the "most viewed" table: its views and what they became.
pub struct Viewed {
    pub product_id: String,
    pub title: String,
    pub views: i64,
    pub orders: u64,
}

impl Viewed {
    pub fn conversion(&self) -> String {
        percent(self.orders, self.views)
    }
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    days: u32,
    /// Why the window is not the one asked for.
    note: Option<String>,
    windows: [u32; 3],
    sales: Result<SalesStats, String>,
    views: Result<ViewStats, String>,
    /// The charts, drawn.
    orders_chart: String,
    revenue_chart: String,
    views_chart: String,
    /// The currency the revenue chart is in, and the others the window had.
    revenue_currency: String,
    other_revenue: Vec<String>,
    most_viewed: Vec<Viewed>,
}

impl DashboardPage {
    /// Completed orders per view of the window, as a percentage.
    fn conversion(&self) -> String {
        match (&self.sales, &self.views) {
            (Ok(sales), Ok(views)) => percent(sales.completed, views.views),
            _ => "–".into(),
        }
    }
}

/// `part` of `whole` as a percentage with one decimal, or a dash when there is no whole.
fn percent(part: u64, whole: i64) -> String {
    if whole <= 0 {
        return "–".into();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

pub async fn show(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, PageError> {
    let token = admin_token(&visitor, "/admin")?;
    // Any window the services accept; another is said, and the default shown.
    let raw = query.days.trim();
    let asked = (!raw.is_empty()).then(|| {
        raw.parse::<u32>()
            .ok()
            .filter(|d| (1..=storefront_kit::validate::MAX_DAYS).contains(d))
    });
    let days = asked.flatten().unwrap_or(30);
    let note = matches!(asked, Some(None)).then(|| {
        format!(
            "Days are a whole number from 1 to {}: these are the last 30.",
            storefront_kit::validate::MAX_DAYS
        )
    });
    let (sales, views) = tokio::join!(
        state.api.sales_stats(token, days),
        state.api.view_stats(token, days)
    );
    let sales = sales.map_err(|e| e.to_string());
    let views = views.map_err(|e| e.to_string());
    let (mut orders_chart, mut revenue_chart, mut revenue_currency, mut other_revenue) =
        (String::new(), String::new(), String::new(), Vec::new());
    if let Ok(sales) = &sales {
        let placed: Vec<(NaiveDate, i64)> = sales
            .days
            .iter()
            .map(|d| (d.day, d.placed as i64))
            .collect();
        let completed: Vec<(NaiveDate, i64)> = sales
            .days
            .iter()
            .map(|d| (d.day, d.completed as i64))
            .collect();
        orders_chart = bar_chart(
            "Orders per day: placed and completed",
            &[("placed", &placed), ("completed", &completed)],
            &|v| v.to_string(),
        );
        if let Some(main) = sales.revenue.first() {
            revenue_currency.clone_from(&main.currency);
            other_revenue = sales
                .revenue
                .iter()
                .skip(1)
                .map(|m| m.to_string())
                .collect();
        }
        let revenue: Vec<(NaiveDate, i64)> = sales
            .days
            .iter()
            .map(|d| {
                let amount = d
                    .revenue
                    .iter()
                    .find(|m| m.currency == revenue_currency)
                    .map_or(0, |m| m.amount);
                (d.day, amount)
            })
            .collect();
        let currency = revenue_currency.clone();
        // With nothing paid there is no currency to draw in: the page says so instead.
        revenue_chart = bar_chart(
            &format!("Revenue per day, {currency}"),
            &[("revenue", &revenue)],
            &|v| {
                storefront_events::Money {
                    amount: v,
                    currency: currency.clone(),
                }
                .to_string()
            },
        );
    }
    let mut views_chart = String::new();
    let mut most_viewed = Vec::new();
    if let Ok(views) = &views {
        let series: Vec<(NaiveDate, i64)> = views.days.iter().map(|d| (d.day, d.views)).collect();
        views_chart = bar_chart("Product views per day", &[("views", &series)], &|v| {
            v.to_string()
        });
        let bought: HashMap<&str, u64> = match &sales {
            Ok(sales) => sales
                .products
                .iter()
                .map(|p| (p.product_id.as_str(), p.orders))
                .fold(HashMap::new(), |mut m, (id, n)| {
                    *m.entry(id).or_default() += n;
                    m
                }),
            Err(_) => HashMap::new(),
        };
        most_viewed = views
            .top
            .iter()
            .map(|p| Viewed {
                product_id: p.product_id.clone(),
                title: p.title.clone(),
                views: p.views,
                orders: bought.get(p.product_id.as_str()).copied().unwrap_or(0),
            })
            .collect();
    }
    let layout = Layout::of(&state, &visitor, "Admin · Dashboard").await;
    Ok(render(&DashboardPage {
        layout,
        days,
        note,
        windows: WINDOWS,
        sales,
        views,
        orders_chart,
        revenue_chart,
        views_chart,
        revenue_currency,
        other_revenue,
        most_viewed,
    }))
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const BOTTOM: f64 = 30.0;
const TOP: f64 = 14.0;
/// The labels' size in the chart's units (`.chart .tick` in app.css): large enough to read when
/// a phone shrinks the chart to half its width.
const FONT: f64 = 16.0;

/// A bar chart of one or two series over the same days, as an accessible SVG: each bar has a
/// `<title>` (the day and its value), the axis shows the largest value and the first and last day.
/// `label` writes a value as the page says it. Nothing in it comes from a user: dates, numbers and
/// the fixed names given here (escaped all the same).
pub fn bar_chart(
    title: &str,
    series: &[(&str, &[(NaiveDate, i64)])],
    label: &dyn Fn(i64) -> String,
) -> String {
    let days = series.first().map_or(0, |(_, s)| s.len());
    let max = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|(_, v)| *v))
        .max()
        .unwrap_or(0)
        .max(1);
    // Room on the left for the largest value's label ("228.90 USD"), whatever its length.
    let left = (label(max).chars().count() as f64 * FONT * 0.6 + 10.0).max(FONT * 2.0);
    let plot_width = WIDTH - left - 4.0;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / days.max(1) as f64;
    let bar = (slot * 0.8 / series.len().max(1) as f64).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(title)
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    let base = TOP + plot_height;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{left}" y1="{base}" x2="{}" y2="{base}"/><line class="grid" x1="{left}" y1="{TOP}" x2="{}" y2="{TOP}"/>"#,
        WIDTH - 4.0,
        WIDTH - 4.0
    );
    let _ = write!(
        svg,
        r#"<text class="tick" x="{}" y="{}" text-anchor="end">{}</text><text class="tick" x="{}" y="{base}" text-anchor="end">0</text>"#,
        left - 6.0,
        TOP + FONT / 3.0,
        escape(&label(max)),
        left - 6.0,
    );
    for (n, (name, points)) in series.iter().enumerate() {
        for (i, (day, value)) in points.iter().enumerate() {
            let height = (*value).max(0) as f64 / max as f64 * plot_height;
            let x = left + i as f64 * slot + slot * 0.1 + n as f64 * bar;
            let _ = write!(
                svg,
                r#"<rect class="bar s{n}" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{height:.1}"><title>{} {}: {}</title></rect>"#,
                base - height,
                day.format("%b %-d"),
                escape(name),
                escape(&label(*value))
            );
        }
    }
    if let (Some((first, _)), Some((last, _))) = (
        series.first().and_then(|(_, s)| s.first()),
        series.first().and_then(|(_, s)| s.last()),
    ) {
        let _ = write!(
            svg,
            r#"<text class="tick" x="{left}" y="{}">{}</text><text class="tick" x="{}" y="{}" text-anchor="end">{}</text>"#,
            HEIGHT - 6.0,
            first.format("%b %-d"),
            WIDTH - 4.0,
            HEIGHT - 6.0,
            last.format("%b %-d"),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn a_chart_has_a_bar_per_day_and_series_scaled_to_the_largest_value() {
        let placed = [(day(1), 4), (day(2), 0), (day(3), 2)];
        let completed = [(day(1), 2), (day(2), 0), (day(3), 1)];
        let svg = bar_chart(
            "Orders <per> day",
            &[("placed", &placed), ("completed", &completed)],
            &|v| v.to_string(),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 6);
        assert!(
            svg.contains("aria-label=\"Orders &lt;per&gt; day\""),
            "{svg}"
        );
        assert!(svg.contains("<title>Nov 1 placed: 4</title>"));
        // The largest bar fills the plot; half of it, half the height.
        let plot = HEIGHT - TOP - BOTTOM;
        assert!(svg.contains(&format!("height=\"{plot:.1}\"")));
        assert!(svg.contains(&format!("height=\"{:.1}\"", plot / 2.0)));
        assert!(svg.contains(">Nov 1</text>") && svg.contains(">Nov 3</text>"));
    }

    /// A walk found "228.90 USD" cut to "8.90 USD": the axis left too little room for it.
    #[test]
    fn the_largest_value_has_room_for_its_label() {
        let revenue = [(day(1), 22_890), (day(2), 0)];
        let label = |v: i64| {
            storefront_events::Money {
                amount: v,
                currency: "USD".into(),
            }
            .to_string()
        };
        let svg = bar_chart("Revenue", &[("revenue", &revenue)], &label);
        let text = "228.90 USD";
        // The label ends at x = left - 6, anchored at its end: its start must be inside the chart.
        let at = svg.find(&format!(">{text}</text>")).unwrap();
        let x: f64 = svg[..at]
            .rsplit("x=\"")
            .next()
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let width = text.chars().count() as f64 * FONT * 0.55;
        assert!(
            x - width >= 0.0,
            "the label starts at {} in {svg}",
            x - width
        );
    }

    #[test]
    fn an_empty_window_draws_flat_bars_not_a_division_by_zero() {
        let none = [(day(1), 0), (day(2), 0)];
        let svg = bar_chart("Views", &[("views", &none)], &|v| v.to_string());
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches("height=\"0.0\"").count(), 2);
    }

    #[test]
    fn conversion_is_a_percentage_or_a_dash() {
        assert_eq!(percent(3, 200), "1.5 %");
        assert_eq!(percent(3, 0), "–");
    }
}
