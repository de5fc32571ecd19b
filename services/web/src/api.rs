//! The services' HTTP APIs as web calls them: always with the visitor's own token (never a
//! service account), so every rule the services enforce holds for the pages too.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use storefront_events::Money;
use storefront_kit::error::PROBLEM_BASE;

use crate::config::Urls;

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

#[derive(Debug, Clone, Deserialize)]
pub struct Category {
    pub category: String,
    pub count: i64,
}

#[derive(Debug, Deserialize)]
struct Categories {
    items: Vec<Category>,
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
pub struct User {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub created_at: String,
}

/// The signed-in customer's own details (`GET /api/users/profile`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<Address>,
}

/// A postal address, as auth keeps it.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub user: User,
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    pub key: String,
    pub url: String,
    /// Pixels, of the stored image.
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub primary: bool,
    /// A smaller copy (400 pixels), when the image is larger (docs/api/products.md).
    #[serde(default)]
    pub thumbnail: Option<Thumbnail>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Thumbnail {
    pub url: String,
    pub width: u32,
}

impl Image {
    /// What a page loads when it cannot choose: the thumbnail when there is one.
    pub fn small_url(&self) -> &str {
        self.thumbnail
            .as_ref()
            .map_or(&self.url, |small| &small.url)
    }

    /// Both sizes for `srcset`, so a browser takes the thumbnail for a tile and the image itself
    /// only where the screen needs its pixels. None when there is one size only.
    pub fn srcset(&self) -> Option<String> {
        let small = self.thumbnail.as_ref()?;
        Some(format!(
            "{} {}w, {} {}w",
            small.url, small.width, self.url, self.width
        ))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub price: Money,
    #[serde(default)]
    pub images: Vec<Image>,
    pub available: i64,
    pub in_stock: bool,
    pub version: i64,
}

impl Product {
    pub fn primary_image(&self) -> Option<&Image> {
        self.images
            .iter()
            .find(|i| i.primary)
            .or(self.images.first())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}

/// Views of the catalog over some days (`GET /api/products/admin/stats`).
#[derive(Debug, Clone, Deserialize)]
pub struct ViewStats {
    pub views: i64,
    pub days: Vec<DayViews>,
    pub top: Vec<ProductViews>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DayViews {
    pub day: chrono::NaiveDate,
    pub views: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductViews {
    pub product_id: String,
    pub title: String,
    pub views: i64,
}

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

impl<T> Page<T> {
    pub fn pages(&self) -> i64 {
        ((self.total + self.per_page - 1) / self.per_page.max(1)).max(1)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CartLine {
    pub product_id: String,
    pub title: String,
    pub unit_price: Option<Money>,
    pub quantity: i64,
    pub line_total: Option<Money>,
    pub available: i64,
    pub orderable: bool,
}

/// Lines checked out into an order that is not paid or cancelled yet.
#[derive(Debug, Clone, Deserialize)]
pub struct Held {
    #[serde(default)]
    pub order_id: Option<String>,
    pub count: i64,
}

/// A line of a price beyond the items: shipping, a fee, tax, a discount.
#[derive(Debug, Clone, Deserialize)]
pub struct Charge {
    pub label: String,
    pub amount: Money,
}

/// What the cart would cost as an order now.
#[derive(Debug, Clone, Deserialize)]
pub struct Estimate {
    pub charges: Vec<Charge>,
    pub total: Money,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cart {
    pub items: Vec<CartLine>,
    pub subtotal: Option<Money>,
    #[serde(default)]
    pub estimate: Option<Estimate>,
    pub count: i64,
    /// Rises with every write of the cart (the live count says which version it counts).
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub held: Vec<Held>,
}

impl Cart {
    /// Whether a line cannot be ordered as it is (its product is gone, or less is available):
    /// the subtotal and the estimate leave it out.
    pub fn has_unorderable(&self) -> bool {
        self.items.iter().any(|line| !line.orderable)
    }
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
    pub state: String,
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
pub fn state_words(state: &str) -> &'static str {
    match state {
        "pending" => "Reserving items",
        "awaiting_payment" => "Awaiting payment",
        "completed" => "Completed",
        "cancelled" => "Cancelled",
        _ => "Unknown",
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
        if self.state == "cancelled" {
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
        if self.state == "completed" {
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
        if self.state != "awaiting_payment" {
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

/// A payment as payments reports it to an admin (`GET /api/payments/{order_id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    pub status: String,
    pub amount: Money,
    #[serde(default)]
    pub attempts: i64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The services whose consumer groups can dead-letter events, in the order the page shows them.
pub const CONSUMERS: [&str; 5] = ["products", "cart", "orders", "payments", "notifications"];

/// One consumer group's dead letters (`GET /api/{service}/admin/dead-letters`).
#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetterList {
    pub group: String,
    pub items: Vec<DeadLetter>,
    pub open: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetter {
    pub id: String,
    pub topic: String,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    pub error: String,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub dead_lettered_at: Option<String>,
    /// `open`, `replayed` or `discarded`.
    pub status: String,
    #[serde(default)]
    pub handled_at: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub message: Option<Value>,
}

impl DeadLetter {
    /// `(1 attempt)`, `(5 attempts)`: how often the service tried.
    pub fn attempts_text(&self) -> String {
        self.attempts
            .map(|n| format!("({})", plural(n as usize, "attempt")))
            .unwrap_or_default()
    }

    /// The message as indented JSON, for a `<pre>`.
    pub fn message_text(&self) -> String {
        self.message
            .as_ref()
            .and_then(|m| serde_json::to_string_pretty(m).ok())
            .unwrap_or_else(|| "(not JSON)".to_owned())
    }
}

/// One movement of a product's stock ledger.
#[derive(Debug, Clone, Deserialize)]
pub struct LedgerEntry {
    pub movement: String,
    pub delta: i64,
    pub stock: LedgerStock,
    pub at: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LedgerStock {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct StockHistory {
    ledger: Vec<LedgerEntry>,
}

/// What paying answered.
#[derive(Debug, Clone)]
pub enum Paid {
    Succeeded,
    /// 3-D Secure: hand this client secret to Stripe.js.
    RequiresAction(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub read: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Notifications {
    pub items: Vec<Notification>,
    pub unread: u64,
}

/// One uploaded file, passed on as it came.
pub struct Upload {
    pub file_name: String,
    pub content_type: String,
    pub bytes: bytes::Bytes,
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
        let request = self.http.request(method, url);
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

    // auth

    pub async fn profile(&self, token: &str) -> ApiResult<Profile> {
        self.json(self.request(
            Method::GET,
            format!("{}/api/users/profile", self.urls.auth),
            Some(token),
        ))
        .await
    }

    /// Sets the name, and sets or clears (`None`) the phone and the address.
    pub async fn update_profile(
        &self,
        token: &str,
        name: &str,
        phone: Option<&str>,
        address: Option<&Address>,
    ) -> ApiResult<Profile> {
        let body = serde_json::json!({ "name": name, "phone": phone, "address": address });
        self.json(
            self.request(
                Method::PATCH,
                format!("{}/api/users/profile", self.urls.auth),
                Some(token),
            )
            .json(&body),
        )
        .await
    }

    pub async fn signup(&self, email: &str, password: &str, name: &str) -> ApiResult<Session> {
        let body = serde_json::json!({ "email": email, "password": password, "name": name });
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/users/signup", self.urls.auth),
                None,
            )
            .json(&body),
        )
        .await
    }

    pub async fn signin(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<&str>,
    ) -> ApiResult<Session> {
        let body = serde_json::json!({ "email": email, "password": password });
        let mut request = self
            .request(
                Method::POST,
                format!("{}/api/users/signin", self.urls.auth),
                None,
            )
            .json(&body);
        if let Some(ip) = client_ip {
            request = request.header("x-real-ip", ip);
        }
        self.json(request).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> ApiResult<Session> {
        let body = serde_json::json!({ "refresh_token": refresh_token });
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/users/refresh", self.urls.auth),
                None,
            )
            .json(&body),
        )
        .await
    }

    pub async fn signout(&self, token: &str) -> ApiResult<()> {
        self.send(self.request(
            Method::POST,
            format!("{}/api/users/signout", self.urls.auth),
            Some(token),
        ))
        .await
        .map(|_| ())
    }

    /// A page of users; `q` is text in their email or name.
    pub async fn users(&self, token: &str, page: i64, q: &str) -> ApiResult<Page<User>> {
        let mut query = vec![("page", page.to_string()), ("per_page", "50".to_owned())];
        if !q.trim().is_empty() {
            query.push(("q", q.trim().to_owned()));
        }
        self.json(
            self.request(
                Method::GET,
                format!("{}/api/users/admin/users", self.urls.auth),
                Some(token),
            )
            .query(&query),
        )
        .await
    }

    /// The users with these ids (at most 100), by id.
    pub async fn users_by_id(
        &self,
        token: &str,
        ids: &[&str],
    ) -> ApiResult<std::collections::HashMap<String, User>> {
        let mut ids: Vec<&str> = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let found: Page<User> = self
            .json(
                self.request(
                    Method::GET,
                    format!("{}/api/users/admin/users", self.urls.auth),
                    Some(token),
                )
                .query(&[("ids", ids.join(",")), ("per_page", "100".to_owned())]),
            )
            .await?;
        Ok(found
            .items
            .into_iter()
            .map(|user| (user.id.clone(), user))
            .collect())
    }

    pub async fn set_blocked(&self, token: &str, user: &str, blocked: bool) -> ApiResult<User> {
        let verb = if blocked { "block" } else { "unblock" };
        self.json(self.request(
            Method::POST,
            format!(
                "{}/api/users/admin/users/{}/{verb}",
                self.urls.auth,
                encode(user)
            ),
            Some(token),
        ))
        .await
    }

    // products

    /// A page of the catalog; `query` is the list's own query string.
    pub async fn products(&self, query: &[(String, String)]) -> ApiResult<Page<Product>> {
        self.json(
            self.request(
                Method::GET,
                format!("{}/api/products", self.urls.products),
                None,
            )
            .query(query),
        )
        .await
    }

    /// The catalog's categories by name, with how many products each has; empty when products
    /// does not answer (a page goes without its filter rather than fail).
    pub async fn categories(&self) -> Vec<Category> {
        let answer: ApiResult<Categories> = self
            .json(self.request(
                Method::GET,
                format!("{}/api/products/categories", self.urls.products),
                None,
            ))
            .await;
        match answer {
            Ok(list) => list.items,
            Err(e) => {
                tracing::info!(error = %e, "the catalog's categories are not known");
                Vec::new()
            }
        }
    }

    pub async fn category_names(&self) -> Vec<String> {
        self.categories()
            .await
            .into_iter()
            .map(|c| c.category)
            .collect()
    }

    /// A product, read with the visitor's token when there is one: products counts the read as a
    /// view unless the token is an admin's.
    pub async fn product(&self, token: Option<&str>, id: &str) -> ApiResult<Product> {
        self.json(self.request(
            Method::GET,
            format!("{}/api/products/{}", self.urls.products, encode(id)),
            token,
        ))
        .await
    }

    /// The catalog's views over the last `days` days (admin).
    pub async fn view_stats(&self, token: &str, days: u32) -> ApiResult<ViewStats> {
        self.json(
            self.request(
                Method::GET,
                format!("{}/api/products/admin/stats", self.urls.products),
                Some(token),
            )
            .query(&[("days", days.to_string())]),
        )
        .await
    }

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

    pub async fn create_product(&self, token: &str, body: &Value) -> ApiResult<Product> {
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/products", self.urls.products),
                Some(token),
            )
            .json(body),
        )
        .await
    }

    pub async fn update_product(
        &self,
        token: &str,
        id: &str,
        version: i64,
        body: &Value,
    ) -> ApiResult<Product> {
        self.json(
            self.request(
                Method::PUT,
                format!("{}/api/products/{}", self.urls.products, encode(id)),
                Some(token),
            )
            .header("if-match", format!("\"v{version}\""))
            .json(body),
        )
        .await
    }

    pub async fn delete_product(&self, token: &str, id: &str, version: i64) -> ApiResult<()> {
        self.send(
            self.request(
                Method::DELETE,
                format!("{}/api/products/{}", self.urls.products, encode(id)),
                Some(token),
            )
            .header("if-match", format!("\"v{version}\"")),
        )
        .await
        .map(|_| ())
    }

    /// The newest movements of a product's stock (admin).
    pub async fn stock_history(&self, token: &str, id: &str) -> ApiResult<Vec<LedgerEntry>> {
        let history: StockHistory = self
            .json(self.request(
                Method::GET,
                format!("{}/api/products/{}/stock", self.urls.products, encode(id)),
                Some(token),
            ))
            .await?;
        Ok(history.ledger)
    }

    /// Deletes one image of a product (`primary: false`) or makes it the primary one.
    pub async fn change_image(
        &self,
        token: &str,
        id: &str,
        key: &str,
        primary: bool,
    ) -> ApiResult<Product> {
        let url = format!(
            "{}/api/products/{}/images/{}",
            self.urls.products,
            encode(id),
            encode(key)
        );
        let request = if primary {
            self.request(Method::POST, format!("{url}/primary"), Some(token))
        } else {
            self.request(Method::DELETE, url, Some(token))
        };
        self.json(request).await
    }

    pub async fn adjust_stock(&self, token: &str, id: &str, body: &Value) -> ApiResult<Product> {
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/products/{}/stock", self.urls.products, encode(id)),
                Some(token),
            )
            .json(body),
        )
        .await
    }

    pub async fn upload_image(&self, token: &str, id: &str, upload: Upload) -> ApiResult<Product> {
        let part = reqwest::multipart::Part::stream(upload.bytes)
            .file_name(upload.file_name)
            .mime_str(&upload.content_type)
            .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new()));
        let form = reqwest::multipart::Form::new().part("file", part);
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/products/{}/images", self.urls.products, encode(id)),
                Some(token),
            )
            .multipart(form),
        )
        .await
    }

    // cart

    pub async fn cart(&self, token: &str) -> ApiResult<Cart> {
        self.json(self.request(
            Method::GET,
            format!("{}/api/cart", self.urls.cart),
            Some(token),
        ))
        .await
    }

    pub async fn add_to_cart(&self, token: &str, product: &str, quantity: i64) -> ApiResult<Cart> {
        let body = serde_json::json!({ "product_id": product, "quantity": quantity });
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/cart/items", self.urls.cart),
                Some(token),
            )
            .json(&body),
        )
        .await
    }

    pub async fn set_quantity(&self, token: &str, product: &str, quantity: i64) -> ApiResult<Cart> {
        let body = serde_json::json!({ "quantity": quantity });
        self.json(
            self.request(
                Method::PATCH,
                format!("{}/api/cart/items/{}", self.urls.cart, encode(product)),
                Some(token),
            )
            .json(&body),
        )
        .await
    }

    pub async fn remove_from_cart(&self, token: &str, product: &str) -> ApiResult<()> {
        self.send(self.request(
            Method::DELETE,
            format!("{}/api/cart/items/{}", self.urls.cart, encode(product)),
            Some(token),
        ))
        .await
        .map(|_| ())
    }

    pub async fn checkout(&self, token: &str, key: &str) -> ApiResult<Order> {
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/cart/checkout", self.urls.cart),
                Some(token),
            )
            .header("idempotency-key", key),
        )
        .await
    }

    // orders

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

    // payments

    pub async fn pay(&self, token: &str, order: &str, payment_method: &str) -> ApiResult<Paid> {
        let body = serde_json::json!({ "order_id": order, "payment_method": payment_method });
        let answer: Value = self
            .json(
                self.request(
                    Method::POST,
                    format!("{}/api/payments", self.urls.payments),
                    Some(token),
                )
                .json(&body),
            )
            .await?;
        match answer["status"].as_str() {
            Some("requires_action") => Ok(Paid::RequiresAction(
                answer["client_secret"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )),
            _ => Ok(Paid::Succeeded),
        }
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

    /// A consuming service's dead letters (admin).
    pub async fn dead_letters(&self, token: &str, service: &str) -> ApiResult<DeadLetterList> {
        let base = self.service_url(service).unwrap_or_default();
        self.json(self.request(
            Method::GET,
            format!("{base}/api/{service}/admin/dead-letters"),
            Some(token),
        ))
        .await
    }

    /// Replays (`replay`) or discards (`discard`) one dead letter of a service (admin).
    pub async fn handle_dead_letter(
        &self,
        token: &str,
        service: &str,
        id: &str,
        action: &str,
    ) -> ApiResult<DeadLetter> {
        let base = self.service_url(service).unwrap_or_default();
        self.json(self.request(
            Method::POST,
            format!(
                "{base}/api/{service}/admin/dead-letters/{}/{action}",
                encode(id)
            ),
            Some(token),
        ))
        .await
    }

    /// The payment of an order, `None` when it has none.
    pub async fn payment(&self, token: &str, order: &str) -> ApiResult<Option<Payment>> {
        let answer = self
            .json(self.request(
                Method::GET,
                format!("{}/api/payments/{}", self.urls.payments, encode(order)),
                Some(token),
            ))
            .await;
        match answer {
            Ok(payment) => Ok(Some(payment)),
            Err(ApiError::Problem(p)) if p.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Why the latest attempt to pay an order failed, when it did (`None` without a payment, or
    /// when it did not fail).
    pub async fn payment_failure(&self, token: &str, order: &str) -> ApiResult<Option<String>> {
        let answer = self
            .json::<Value>(self.request(
                Method::GET,
                format!("{}/api/payments/{}", self.urls.payments, encode(order)),
                Some(token),
            ))
            .await;
        match answer {
            Ok(payment) if payment["status"] == "failed" => Ok(Some(
                payment["reason"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .unwrap_or("the bank did not accept it")
                    .to_owned(),
            )),
            Ok(_) => Ok(None),
            Err(ApiError::Problem(p)) if p.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    // notifications

    pub async fn notifications(&self, token: &str, limit: i64) -> ApiResult<Notifications> {
        self.json(self.request(
            Method::GET,
            format!(
                "{}/api/notifications?limit={limit}",
                self.urls.notifications
            ),
            Some(token),
        ))
        .await
    }

    pub async fn read_all(&self, token: &str) -> ApiResult<()> {
        self.send(self.request(
            Method::POST,
            format!("{}/api/notifications/read-all", self.urls.notifications),
            Some(token),
        ))
        .await
        .map(|_| ())
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
