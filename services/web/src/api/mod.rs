//! The services' HTTP APIs as web calls them: always with the visitor's own token (never a
//! service account), so every rule the services enforce holds for the pages too.
//!
//! One file a service: its answers as web reads them and the calls ([`Api`]'s methods); this
//! file holds the client, its errors and what every service shares (a page of results).

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use storefront_kit::error::PROBLEM_BASE;

use crate::config::Urls;

mod auth;
mod cart;
mod deadletters;
mod notifications;
mod orders;
mod payments;
mod products;

pub use auth::{Address, Profile, Session, User};
pub use cart::{Cart, CartLine, Charge, Estimate, Held};
pub use deadletters::{CONSUMERS, DeadLetter, DeadLetterList};
pub use notifications::{Notification, Notifications};
pub use orders::{
    DaySales, Order, OrderLine, OrderPayment, OrderRefund, ProductSales, SalesStats, Step, plural,
    state_words, when,
};
pub use payments::{Paid, Payment};
pub use products::{
    Category, DayViews, Image, LedgerEntry, LedgerStock, Product, ProductViews, Thumbnail, Upload,
    ViewStats,
};

/// A service's problem+json answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub errors: Vec<FieldProblem>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl Problem {
    /// The stable slug, e.g. `version-mismatch`.
    pub fn slug(&self) -> &str {
        self.kind.strip_prefix(PROBLEM_BASE).unwrap_or(&self.kind)
    }

    /// The message for one form field, if the service named it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == name || e.field.starts_with(&format!("{name}.")))
            .map(|e| e.message.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", .0.detail)]
    Problem(Problem),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Problem(p) => p.status,
            ApiError::Unavailable(_) => 503,
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ApiError::Problem(p) => Some(p),
            ApiError::Unavailable(_) => None,
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}

impl<T> Page<T> {
    pub fn pages(&self) -> i64 {
        ((self.total + self.per_page - 1) / self.per_page.max(1)).max(1)
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    urls: Urls,
}

async fn problem_of(response: reqwest::Response) -> ApiError {
    let status = response.status();
    let mut problem: Problem = response.json().await.unwrap_or_default();
    problem.status = status.as_u16();
    if problem.detail.is_empty() {
        problem.detail = status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned();
    }
    ApiError::Problem(problem)
}

impl Api {
    pub fn new(urls: Urls) -> Self {
        Api {
            http: storefront_kit::server::http_client(std::time::Duration::from_secs(10)),
            urls,
        }
    }

    fn request(&self, method: Method, url: String, token: Option<&str>) -> RequestBuilder {
        let request = storefront_kit::telemetry::propagate(self.http.request(method, url));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: RequestBuilder) -> ApiResult<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("a service did not answer: {e}")))?;
        // 304 answers only a conditional request (`order_changed`).
        if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
            Ok(response)
        } else if response.status().is_server_error()
            && response.status() != StatusCode::SERVICE_UNAVAILABLE
        {
            Err(ApiError::Unavailable(format!(
                "a service failed ({})",
                response.status()
            )))
        } else {
            Err(problem_of(response).await)
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> ApiResult<T> {
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| ApiError::Unavailable(format!("unexpected answer: {e}")))
    }

    fn service_url(&self, service: &str) -> Option<&str> {
        Some(match service {
            "products" => &self.urls.products,
            "cart" => &self.urls.cart,
            "orders" => &self.urls.orders,
            "payments" => &self.urls.payments,
            "notifications" => &self.urls.notifications,
            _ => return None,
        })
    }
}

/// A path segment from user input, percent-encoded so it can never add a path or query.
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Serialises a form struct back as JSON fields (for re-rendering).
pub fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A review found the admin's timeline of an order cancelled and then paid too late showing
    /// the cancel at the refund's time, after the payment.
    #[test]
    fn a_timeline_is_in_the_order_things_happened() {
        let usd = serde_json::json!({ "amount": 2500, "currency": "USD" });
        let order: Order = serde_json::from_value(serde_json::json!({
            "id": "01a23020-a455-74a5-ae2f-16e6cf554f77",
            "state": "cancelled",
            "reason": "payment window expired",
            "lines": [{ "product_id": "p", "title": "Mug", "unit_price": usd,
                        "quantity": 1, "line_total": usd }],
            "total": usd,
            "created_at": "2026-12-01T10:00:00Z",
            "updated_at": "2026-12-01T10:31:00Z",
            "payment": { "amount": usd, "paid_at": "2026-12-01T10:30:00.5Z" },
            "refund": { "status": "refunded", "amount": usd, "reason": "the order had ended",
                        "due_at": "2026-12-01T10:30:01Z", "refunded_at": "2026-12-01T10:31:00Z" },
        }))
        .unwrap();
        let steps: Vec<(&str, &str)> = order
            .timeline()
            .iter()
            .map(|s| (s.what, s.at.as_str()))
            .map(|(what, at)| (what, if at == "—" { "—" } else { "at" }))
            .collect();
        assert_eq!(
            steps,
            [
                ("Placed", "at"),
                ("Cancelled", "—"),
                ("Paid", "at"),
                ("Refund due", "at"),
                ("Refunded", "at"),
            ]
        );
        assert_eq!(order.timeline()[0].at, "2026-12-01 10:00:00 UTC");

        let completed: Order = serde_json::from_value(serde_json::json!({
            "id": "x", "state": "completed", "lines": [], "total": usd,
            "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:03Z",
            "payment": { "amount": usd, "paid_at": "2026-12-01T10:00:02Z" },
        }))
        .unwrap();
        let whats: Vec<&str> = completed.timeline().iter().map(|s| s.what).collect();
        assert_eq!(whats, ["Placed", "Paid", "Completed"]);
        assert_eq!(completed.timeline()[2].at, "2026-12-01 10:00:03 UTC");
    }
}
