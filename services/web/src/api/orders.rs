//! orders' API: a customer's orders, every order (admin), waiting for a change, the sales.

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use storefront_events::{Money, orders::OrderState};

use super::{Api, ApiError, ApiResult, Page, cart::Charge, encode};

/// Sales over some days (`GET /api/orders/admin/stats`).
#[derive(Debug, Clone, Deserialize)]
pub struct SalesStats {
    pub from: chrono::NaiveDate,
    pub until: chrono::NaiveDate,
    pub placed: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub revenue: Vec<Money>,
    pub days: Vec<DaySales>,
    pub products: Vec<ProductSales>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DaySales {
    pub day: chrono::NaiveDate,
    pub placed: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub revenue: Vec<Money>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductSales {
    pub product_id: String,
    pub title: String,
    pub units: i64,
    pub orders: u64,
    pub revenue: Money,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderLine {
    pub product_id: String,
    pub title: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub line_total: Money,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: String,
    /// The number a customer reads; orders placed before numbers have none.
    #[serde(default)]
    pub number: Option<i64>,
    #[serde(default)]
    pub user_id: String,
    pub state: OrderState,
    pub lines: Vec<OrderLine>,
    #[serde(default)]
    pub subtotal: Option<Money>,
    #[serde(default)]
    pub charges: Vec<Charge>,
    pub total: Money,
    #[serde(default)]
    pub reason: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub version: i64,
    /// While a payment is with Stripe.
    #[serde(default)]
    pub paying_until: Option<String>,
    #[serde(default)]
    pub refund: Option<OrderRefund>,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The money received.
    #[serde(default)]
    pub payment: Option<OrderPayment>,
}

/// The payment an order received.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderPayment {
    pub amount: Money,
    pub paid_at: String,
}

/// One step of an order's life, for the admin's order page.
#[derive(Debug, Clone)]
pub struct Step {
    pub at: String,
    pub what: &'static str,
    pub detail: String,
}

/// `1 line`, `2 lines`.
pub fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

/// An RFC 3339 time as `2026-12-01 14:32:05 UTC` (the text itself when it is not one).
pub fn when(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|at| {
            at.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// An order's state as a customer reads it (`static/app.js` has the same words for live updates).
pub fn state_words(state: &OrderState) -> &'static str {
    match state {
        OrderState::Pending => "Reserving items",
        OrderState::AwaitingPayment => "Awaiting payment",
        OrderState::Completed => "Completed",
        OrderState::Cancelled => "Cancelled",
    }
}

impl Order {
    /// What the order is called on a page: its number, or (placed before numbers) the start of
    /// its id.
    pub fn label(&self) -> String {
        match self.number {
            Some(number) => number.to_string(),
            None => self.id.chars().take(8).collect(),
        }
    }

    pub fn status_words(&self) -> &'static str {
        state_words(&self.state)
    }

    /// What happened to the order, in the order it happened: placed, cancelled (before a payment
    /// that came too late), paid, completed, a refund asked for and confirmed. Each with the time
    /// the order records for it; a cancel followed by a late payment has none of its own (orders
    /// keeps one `updated_at`, which the refund moved on), so it shows none.
    pub fn timeline(&self) -> Vec<Step> {
        let step = |at: Option<&str>, what: &'static str, detail: String| Step {
            at: at.map_or_else(|| "—".to_owned(), when),
            what,
            detail,
        };
        let mut steps = vec![step(
            Some(&self.created_at),
            "Placed",
            format!("{} for {}", plural(self.lines.len(), "line"), self.total),
        )];
        let updated = self.updated_at.as_deref();
        if self.state == OrderState::Cancelled {
            // Later than the cancel, something else moved `updated_at`: a late payment.
            let at = if self.payment.is_none() && self.refund.is_none() {
                updated
            } else {
                None
            };
            steps.push(step(
                at,
                "Cancelled",
                self.reason.clone().unwrap_or_default(),
            ));
        }
        if let Some(payment) = &self.payment {
            steps.push(step(
                Some(&payment.paid_at),
                "Paid",
                payment.amount.to_string(),
            ));
        }
        if self.state == OrderState::Completed {
            steps.push(step(updated, "Completed", String::new()));
        }
        if let Some(refund) = &self.refund {
            if let Some(due) = &refund.due_at {
                steps.push(step(
                    Some(due),
                    "Refund due",
                    format!("{}: {}", refund.amount, refund.reason),
                ));
            }
            if let Some(done) = &refund.refunded_at {
                steps.push(step(Some(done), "Refunded", refund.amount.to_string()));
            }
        }
        steps
    }

    /// When an order awaiting payment stops waiting, as `14:32 UTC on 1 December`.
    pub fn pay_by(&self) -> Option<String> {
        if self.state != OrderState::AwaitingPayment {
            return None;
        }
        let at = chrono::DateTime::parse_from_rfc3339(self.expires_at.as_deref()?).ok()?;
        Some(
            at.with_timezone(&chrono::Utc)
                .format("%H:%M UTC on %-d %B")
                .to_string(),
        )
    }
}

/// Money that arrived after the order ended, on its way back.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderRefund {
    /// `due` or `refunded`.
    pub status: String,
    pub amount: Money,
    pub reason: String,
    #[serde(default)]
    pub due_at: Option<String>,
    #[serde(default)]
    pub refunded_at: Option<String>,
}

impl Api {
    /// The shop's sales over the last `days` days (admin).
    pub async fn sales_stats(&self, token: &str, days: u32) -> ApiResult<SalesStats> {
        self.json(
            self.request(
                Method::GET,
                format!("{}/api/orders/admin/stats", self.urls.orders),
                Some(token),
            )
            .query(&[("days", days.to_string())]),
        )
        .await
    }

    pub async fn orders(&self, token: &str, page: i64) -> ApiResult<Page<Order>> {
        self.json(self.request(
            Method::GET,
            format!("{}/api/orders?page={page}&per_page=20", self.urls.orders),
            Some(token),
        ))
        .await
    }

    pub async fn all_orders(
        &self,
        token: &str,
        status: Option<&str>,
        page: i64,
    ) -> ApiResult<Page<Order>> {
        let mut query = vec![("page", page.to_string()), ("per_page", "50".to_owned())];
        if let Some(status) = status {
            query.push(("status", status.to_owned()));
        }
        self.json(
            self.request(
                Method::GET,
                format!("{}/api/orders/admin/all", self.urls.orders),
                Some(token),
            )
            .query(&query),
        )
        .await
    }

    pub async fn order(&self, token: &str, id: &str) -> ApiResult<Order> {
        self.json(self.request(
            Method::GET,
            format!("{}/api/orders/{}", self.urls.orders, encode(id)),
            Some(token),
        ))
        .await
    }

    /// The order once it changed from `version`, waiting up to `wait_secs` (orders' long-poll);
    /// `None` if it did not change meanwhile.
    pub async fn order_changed(
        &self,
        token: &str,
        id: &str,
        version: i64,
        wait_secs: u64,
    ) -> ApiResult<Option<Order>> {
        let request = self
            .request(
                Method::GET,
                format!(
                    "{}/api/orders/{}?wait={wait_secs}",
                    self.urls.orders,
                    encode(id)
                ),
                Some(token),
            )
            .header(reqwest::header::IF_NONE_MATCH, format!("\"{version}\""));
        let response = self.send(request).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        response
            .json()
            .await
            .map(Some)
            .map_err(|e| ApiError::Unavailable(format!("unexpected answer: {e}")))
    }

    pub async fn cancel_order(&self, token: &str, id: &str) -> ApiResult<Order> {
        self.json(self.request(
            Method::POST,
            format!("{}/api/orders/{}/cancel", self.urls.orders, encode(id)),
            Some(token),
        ))
        .await
    }
}
