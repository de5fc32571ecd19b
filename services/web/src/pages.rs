//! The shared parts of every page: the layout (who is signed in, cart count, unread bell), form
//! errors from a service's problem+json, and the error pages.

use askama::Template;
use axum::{
    http::{StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};

use crate::{
    AppState,
    api::{ApiError, Problem},
    session::Visitor,
};

/// What the layout shows around every page.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub title: String,
    pub signed_in: bool,
    pub admin: bool,
    pub email: String,
    pub csrf: String,
    pub cart_count: i64,
    /// The cart's version that count is of: the live count (app.js) only replaces it with a
    /// newer one.
    pub cart_version: i64,
    pub unread: u64,
    /// The newest notification when the page was read: the socket asks for what came after it,
    /// so a status change between this render and the socket's hello still reaches the page.
    pub after: Option<i64>,
    /// Stripe.js for the payment page: (script URL, publishable key).
    pub stripe: Option<(String, String)>,
}

impl Layout {
    /// The layout for `visitor`. Pages with live order statuses call this before reading the
    /// order, so that `after` is no newer than what they show.
    pub async fn of(state: &AppState, visitor: &Visitor, title: impl Into<String>) -> Layout {
        let mut layout = Layout {
            title: title.into(),
            signed_in: visitor.claims.is_some(),
            admin: visitor.is_admin(),
            email: visitor
                .claims
                .as_ref()
                .map(|c| c.email.clone())
                .unwrap_or_default(),
            csrf: visitor.csrf.clone(),
            ..Layout::default()
        };
        if let Some(token) = &visitor.token {
            let (cart, notifications) =
                tokio::join!(state.api.cart(token), state.api.notifications(token, 1));
            if let Ok(cart) = cart {
                layout.cart_count = cart.count;
                layout.cart_version = cart.version;
            }
            if let Ok(notifications) = notifications {
                layout.unread = notifications.unread;
                layout.after = Some(notifications.items.first().map_or(0, |n| n.id));
            }
        }
        layout
    }

    pub fn with_stripe(mut self, state: &AppState) -> Self {
        self.stripe = Some((
            state.config.stripe_js_url.clone(),
            state.config.stripe_publishable_key.clone(),
        ));
        self
    }
}

/// A service's complaint about a form, field by field.
#[derive(Debug, Clone, Default)]
pub struct FormErrors {
    pub problem: Option<Problem>,
    /// Set by web itself (e.g. a field that is not a number).
    pub local: Vec<(String, String)>,
}

impl FormErrors {
    pub fn none() -> Self {
        FormErrors::default()
    }

    pub fn of(problem: Problem) -> Self {
        FormErrors {
            problem: Some(problem),
            local: Vec::new(),
        }
    }

    pub fn add(&mut self, field: &str, message: &str) {
        self.local.push((field.to_owned(), message.to_owned()));
    }

    pub fn is_empty(&self) -> bool {
        self.problem.is_none() && self.local.is_empty()
    }

    /// The message for `name`, as a sentence (services write "the city is required").
    pub fn field(&self, name: &str) -> Option<String> {
        let message = match self.local.iter().find(|(f, _)| f == name) {
            Some((_, message)) => message.clone(),
            None => self.problem.as_ref()?.field(name)?.to_owned(),
        };
        Some(capitalised(&message))
    }

    /// The message for the whole form (not tied to a field).
    pub fn summary(&self) -> Option<String> {
        match &self.problem {
            Some(p) if p.errors.is_empty() => Some(p.detail.clone()),
            Some(_) => Some("Please correct the fields marked below.".into()),
            None if !self.local.is_empty() => {
                Some("Please correct the fields marked below.".into())
            }
            None => None,
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: String,
    message: String,
}

/// `text` with its first letter upper-cased ("the city is required" → "The city is required").
pub fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A list's pages: where the others are, keeping the list's other parameters
/// (`templates/pager.html` draws it).
#[derive(Debug, Clone)]
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    path: String,
    kept: Vec<(String, String)>,
}

impl Pager {
    /// `kept`: the list's query parameters other than `page` (empty ones are left out).
    pub fn new(path: &str, kept: &[(&str, &str)], page: i64, pages: i64) -> Pager {
        Pager {
            page,
            pages,
            path: path.to_owned(),
            kept: kept
                .iter()
                .filter(|(_, value)| !value.trim().is_empty())
                .map(|(key, value)| ((*key).to_owned(), value.trim().to_owned()))
                .collect(),
        }
    }

    pub fn of<T>(path: &str, kept: &[(&str, &str)], list: &crate::api::Page<T>) -> Pager {
        Pager::new(path, kept, list.page, list.pages())
    }

    /// The link to `page` of the same list.
    pub fn link(&self, page: i64) -> String {
        let mut query = self.kept.clone();
        query.push(("page".to_owned(), page.to_string()));
        format!(
            "{}?{}",
            self.path,
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    }
}

pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            status_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "This page could not be shown.",
            )
        }
    }
}

/// What an error page says: kept on its response, so the session middleware can show it again
/// with the visitor's own header ([`with_layout`]).
#[derive(Debug, Clone)]
pub struct ErrorPageText {
    heading: String,
    message: String,
}

pub fn status_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let text = ErrorPageText {
        heading: heading.to_owned(),
        message: message.to_owned(),
    };
    let mut response = (status, error_html(&text, Layout::default())).into_response();
    response.extensions_mut().insert(text);
    response
}

fn error_html(text: &ErrorPageText, layout: Layout) -> Html<String> {
    let page = ErrorPage {
        layout: Layout {
            title: text.heading.clone(),
            ..layout
        },
        heading: text.heading.clone(),
        message: text.message.clone(),
    };
    Html(page.render().unwrap_or_else(|_| text.message.clone()))
}

/// An error page (404, 403, …) drawn again for a signed-in `visitor`: the header keeps their
/// account, cart and bell, as every other page does. Other answers pass as they are.
pub async fn with_layout(state: &AppState, visitor: &Visitor, response: Response) -> Response {
    let Some(text) = response.extensions().get::<ErrorPageText>().cloned() else {
        return response;
    };
    if visitor.claims.is_none() {
        return response;
    }
    let layout = Layout::of(state, visitor, text.heading.clone()).await;
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = error_html(&text, layout).into_response().into_body();
    Response::from_parts(parts, body)
}

/// `response` with another status (a form shown again with its errors).
pub fn with_status(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response
}

/// The status of a service's problem, for the page that shows it.
pub fn status_of(problem: &Problem) -> StatusCode {
    StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST)
}

pub fn forbidden(message: &str) -> Response {
    status_page(StatusCode::FORBIDDEN, "Not allowed", message)
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// Sign in first, then come back to this path.
    SignIn(String),
    NotFound,
    AdminOnly,
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Api(e)
    }
}

/// To sign in, then back to `path` when it is one [`safe_next`] follows (else to `/`).
pub fn sign_in_to(path: &str) -> Response {
    let next = safe_next(Some(path));
    Redirect::to(&format!("/signin?next={}", crate::api::encode(&next))).into_response()
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn(path) => sign_in_to(&path),
            PageError::NotFound => status_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here. It may have been removed.",
            ),
            PageError::AdminOnly => forbidden("This part of the shop is for admins."),
            PageError::Api(ApiError::Problem(p)) if p.status == 404 => {
                PageError::NotFound.into_response()
            }
            PageError::Api(ApiError::Problem(p)) if p.status == 401 => sign_in_to("/"),
            PageError::Api(ApiError::Problem(p)) if p.status == 403 => forbidden(&p.detail),
            PageError::Api(ApiError::Problem(p)) => {
                status_page(status_of(&p), "That did not work", &p.detail)
            }
            PageError::Api(ApiError::Unavailable(e)) => {
                tracing::warn!(error = %e, "a service is unavailable");
                let mut response = status_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Please try again",
                    "Part of the shop is not answering right now. Try again in a moment.",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                response
            }
        }
    }
}

/// The signed-in visitor's token, or a redirect to sign in and come back to `path`.
pub fn token<'a>(visitor: &'a Visitor, path: &str) -> Result<&'a str, PageError> {
    visitor
        .token
        .as_deref()
        .ok_or_else(|| PageError::SignIn(path.to_owned()))
}

/// The admin's token, or sign in / 403.
pub fn admin_token<'a>(visitor: &'a Visitor, path: &str) -> Result<&'a str, PageError> {
    let token = token(visitor, path)?;
    if !visitor.is_admin() {
        return Err(PageError::AdminOnly);
    }
    Ok(token)
}

/// The longest `next` followed: the redirect to sign in carries it in a header, and a protected
/// page with a path of some kilobytes made the gateway answer 502 ("too big header").
const NEXT_MAX: usize = 512;

/// Only local paths are followed after sign-in (no open redirect): a `/`, then only the path and
/// query characters of RFC 3986, at most `NEXT_MAX` bytes. So no `//` or `/\` (another host), and
/// no control character or space: browsers drop tabs and newlines from a URL, so `/\t/evil.example`
/// would be `//evil.example`, and a control character cannot be put in a `Location` header at all.
/// Anything else goes to `/`.
pub fn safe_next(next: Option<&str>) -> String {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
    match next {
        Some(path)
            if path.len() <= NEXT_MAX
                && path.starts_with('/')
                && !path.starts_with("//")
                && path.bytes().all(allowed) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `19.99 USD` from a price field in major units (`19.99`), or a message.
pub fn parse_price(text: &str) -> Result<i64, &'static str> {
    let text = text.trim();
    let (whole, cents) = match text.split_once('.') {
        Some((whole, cents)) => (whole, cents),
        None => (text, "0"),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || cents.len() > 2
        || !cents.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("enter a price such as 19.99");
    }
    let whole: i64 = whole.parse().map_err(|_| "the price is too large")?;
    let cents: i64 = format!("{cents:0<2}").parse().unwrap_or(0);
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(cents))
        .ok_or("the price is too large")
}

/// A price in minor units as a form shows it: `19.99`.
pub fn price_text(amount: i64) -> String {
    format!("{}.{:02}", amount / 100, amount % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_links_keep_the_lists_other_parameters() {
        let pager = Pager::new(
            "/admin/orders",
            &[("status", "completed"), ("q", " "), ("x", "a&b=c")],
            2,
            3,
        );
        assert_eq!(
            pager.link(3),
            "/admin/orders?status=completed&x=a%26b%3Dc&page=3"
        );
        assert_eq!(Pager::new("/", &[], 1, 1).link(1), "/?page=1");
    }

    #[test]
    fn prices_parse_from_major_units() {
        assert_eq!(parse_price("19.99"), Ok(1999));
        assert_eq!(parse_price("19.9"), Ok(1990));
        assert_eq!(parse_price("19"), Ok(1900));
        assert_eq!(parse_price(" 0.05 "), Ok(5));
        for bad in [
            "",
            "abc",
            "1.234",
            "-1",
            "1e3",
            ".5",
            "99999999999999999999",
        ] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
        assert_eq!(price_text(1999), "19.99");
        assert_eq!(price_text(5), "0.05");
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/cart")), "/cart");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(
            safe_next(Some("/products?category=mugs&page=2")),
            "/products?category=mugs&page=2"
        );
        for bad in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/x",
            "/a\u{b}b",
            "/a\0b",
            "/a b",
            "/é",
            "\t/x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(511)))).len(), 512);
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(512)))), "/");
        assert_eq!(safe_next(None), "/");
    }
}
