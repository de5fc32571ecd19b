//! The customer shop: catalog, product, sign up/in/out, cart, checkout, payment, orders,
//! notifications.

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use crate::{
    AppState,
    api::{ApiError, Cart, Notification, Order, Page, Paid, Product, Session},
    pages::{
        FormErrors, Layout, PageError, Pager, render, safe_next, status_of, token, with_status,
    },
    session::{SetCookies, Visitor, cleared_cookies, fresh_csrf_cookie, session_cookies},
};

type PageResult = Result<Response, PageError>;

// ---------------------------------------------------------------- catalog

#[derive(Debug, Default, Deserialize)]
pub struct CatalogQuery {
    #[serde(default)]
    q: String,
    /// As the API reads it: lower case (`Kitchen` is `kitchen`).
    #[serde(default, deserialize_with = "lower_case")]
    category: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    in_stock: String,
    /// Price bounds as a shopper types them ("12" or "12.50"), in the catalog's currency.
    #[serde(default)]
    min_price: String,
    #[serde(default)]
    max_price: String,
    #[serde(default)]
    page: String,
}

fn lower_case<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|s| s.trim().to_lowercase())
}

/// A price typed in major units ("12", "12.5", "12.50") as minor units.
fn minor_units(raw: &str) -> Result<i64, String> {
    let raw = raw.trim().trim_start_matches('$');
    let (whole, cents) = raw.split_once('.').unwrap_or((raw, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(cents.is_empty() || (cents.len() <= 2 && digits(cents))) {
        return Err(format!("{raw:?} is not a price like 12 or 12.50"));
    }
    if whole.len() > 8 {
        return Err(format!("{raw} is more than any price in the shop"));
    }
    let cents = format!("{cents:0<2}");
    Ok(whole.parse::<i64>().unwrap_or(0) * 100 + cents.parse::<i64>().unwrap_or(0))
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    layout: Layout,
    query: CatalogQuery,
    products: Vec<Product>,
    total: i64,
    page: i64,
    pages: i64,
    error: Option<String>,
    /// The catalog's categories (with the chosen one even when it has no products).
    categories: Vec<String>,
}

impl CatalogPage {
    /// The pages of the same search.
    fn pager(&self) -> Pager {
        let q = &self.query;
        Pager::new(
            "/",
            &[
                ("q", &q.q),
                ("category", &q.category),
                ("sort", &q.sort),
                ("in_stock", &q.in_stock),
                ("min_price", &q.min_price),
                ("max_price", &q.max_price),
            ],
            self.page,
            self.pages,
        )
    }
}

pub async fn catalog(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<CatalogQuery>,
) -> PageResult {
    let mut api_query: Vec<(String, String)> = vec![("per_page".into(), "12".into())];
    for (key, value) in [
        ("q", &query.q),
        ("category", &query.category),
        ("sort", &query.sort),
        ("page", &query.page),
    ] {
        if !value.trim().is_empty() {
            api_query.push((key.into(), value.trim().to_owned()));
        }
    }
    if query.in_stock == "true" {
        api_query.push(("in_stock".into(), "true".into()));
    }
    let mut typed = Vec::new();
    for (key, label, value) in [
        ("min_price", "Price from", &query.min_price),
        ("max_price", "Price to", &query.max_price),
    ] {
        if value.trim().is_empty() {
            continue;
        }
        match minor_units(value) {
            Ok(cents) => api_query.push((key.into(), cents.to_string())),
            Err(message) => typed.push(format!("{label}: {message}")),
        }
    }
    let layout = Layout::of(&state, &visitor, "Shop").await;
    let categories = state.api.category_names().await;
    let listed = if typed.is_empty() {
        state.api.products(&api_query).await
    } else {
        Err(ApiError::Problem(crate::api::Problem {
            kind: String::new(),
            status: 422,
            detail: typed.join("; "),
            errors: Vec::new(),
        }))
    };
    let (products, total, page, pages, error) = match listed {
        Ok(list) => {
            let pages = list.pages();
            (list.items, list.total, list.page, pages, None)
        }
        Err(ApiError::Problem(p)) if p.status == 422 || p.status == 400 => {
            // The API's field names as the form labels them.
            fn label(field: &str) -> &str {
                match field {
                    "min_price" => "Price from",
                    "max_price" => "Price to",
                    "q" => "Search",
                    "category" => "Category",
                    "sort" => "Sort",
                    other => other,
                }
            }
            let message = p
                .errors
                .iter()
                .map(|e| {
                    let text = e
                        .message
                        .replace("max_price", "the upper price")
                        .replace("min_price", "the lower one");
                    format!("{}: {text}", label(&e.field))
                })
                .collect::<Vec<_>>()
                .join("; ");
            (
                Vec::new(),
                0,
                1,
                1,
                Some(if message.is_empty() {
                    p.detail
                } else {
                    message
                }),
            )
        }
        Err(e) => return Err(e.into()),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = CatalogPage {
        layout,
        query,
        products,
        total,
        page,
        pages,
        error,
        categories,
    };
    Ok(with_status(render(&page), status))
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    layout: Layout,
    product: Product,
    errors: FormErrors,
}

pub async fn product(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> PageResult {
    let product = state.api.product(visitor.token.as_deref(), &id).await?;
    let layout = Layout::of(&state, &visitor, product.title.clone()).await;
    Ok(render(&ProductPage {
        layout,
        product,
        errors: FormErrors::none(),
    }))
}

// ---------------------------------------------------------------- sign up, in, out

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    layout: Layout,
    email: String,
    next: String,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignUpPage {
    layout: Layout,
    email: String,
    name: String,
    next: String,
    errors: FormErrors,
}

impl SignInPage {
    fn next_encoded(&self) -> String {
        crate::api::encode(&self.next)
    }
}

pub async fn signin_form(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<NextQuery>,
) -> Response {
    let layout = Layout::of(&state, &visitor, "Sign in").await;
    render(&SignInPage {
        layout,
        email: String::new(),
        next: safe_next(query.next.as_deref()),
        errors: FormErrors::none(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// The visitor's address (from the gateway's `X-Real-IP` when web trusts it), passed on to auth
/// so its per-address sign-in limit counts each visitor, not web itself: a walk found every form
/// sign-in sharing web's own address, so 60 wrong passwords from anyone locked everyone out.
pub struct ClientAddress(Option<std::net::IpAddr>);

impl axum::extract::FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(storefront_kit::server::client_ip(
            parts,
            state.config.http.trust_proxy_headers,
        )))
    }
}

pub async fn signin(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    ClientAddress(address): ClientAddress,
    Form(form): Form<SignInForm>,
) -> PageResult {
    let next = safe_next(form.next.as_deref());
    let address = address.map(|ip| ip.to_string());
    match state
        .api
        .signin(form.email.trim(), &form.password, address.as_deref())
        .await
    {
        Ok(session) => Ok(signed_in(&state, &session, &next)),
        Err(ApiError::Problem(problem)) => {
            let layout = Layout::of(&state, &visitor, "Sign in").await;
            let status = status_of(&problem);
            let page = SignInPage {
                layout,
                email: form.email,
                next,
                errors: FormErrors::of(problem),
            };
            Ok(with_status(render(&page), status))
        }
        Err(e) => Err(e.into()),
    }
}

/// A new session: its cookies, and on to where the visitor was going.
fn signed_in(state: &AppState, session: &Session, next: &str) -> Response {
    let secure = state.config.http.cookie_secure;
    let mut cookies = session_cookies(session, secure);
    cookies.push(fresh_csrf_cookie(secure));
    (Extension(SetCookies(cookies)), Redirect::to(next)).into_response()
}

pub async fn signup_form(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<NextQuery>,
) -> Response {
    let layout = Layout::of(&state, &visitor, "Create an account").await;
    render(&SignUpPage {
        layout,
        email: String::new(),
        name: String::new(),
        next: safe_next(query.next.as_deref()),
        errors: FormErrors::none(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SignUpForm {
    email: String,
    name: String,
    password: String,
    next: Option<String>,
}

pub async fn signup(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<SignUpForm>,
) -> PageResult {
    let next = safe_next(form.next.as_deref());
    match state
        .api
        .signup(form.email.trim(), &form.password, form.name.trim())
        .await
    {
        Ok(session) => Ok(signed_in(&state, &session, &next)),
        Err(ApiError::Problem(mut problem)) => {
            if problem.status == 409 && problem.errors.is_empty() {
                // The email is taken: say so by the email field.
                problem.errors.push(crate::api::FieldProblem {
                    field: "email".into(),
                    message: problem.detail.clone(),
                });
            }
            let layout = Layout::of(&state, &visitor, "Create an account").await;
            let status = status_of(&problem);
            let page = SignUpPage {
                layout,
                email: form.email,
                name: form.name,
                next,
                errors: FormErrors::of(problem),
            };
            Ok(with_status(render(&page), status))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn signout(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> Response {
    if let Some(token) = &visitor.token
        && let Err(e) = state.api.signout(token).await
    {
        tracing::info!(error = %e, "signout at auth failed; clearing the cookies anyway");
    }
    let secure = state.config.http.cookie_secure;
    let mut cookies = cleared_cookies(secure);
    cookies.push(fresh_csrf_cookie(secure));
    (Extension(SetCookies(cookies)), Redirect::to("/")).into_response()
}

// ---------------------------------------------------------------- cart and checkout

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage {
    layout: Layout,
    cart: Cart,
    checkout_key: String,
    error: Option<String>,
}

async fn cart_page(state: &AppState, visitor: &Visitor, error: Option<String>) -> PageResult {
    let token = token(visitor, "/cart")?;
    let cart = state.api.cart(token).await?;
    let layout = Layout::of(state, visitor, "Your cart").await;
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = CartPage {
        layout,
        cart,
        checkout_key: uuid::Uuid::new_v4().to_string(),
        error,
    };
    Ok(with_status(render(&page), status))
}

pub async fn cart(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> PageResult {
    cart_page(&state, &visitor, None).await
}

#[derive(Debug, Deserialize)]
pub struct AddForm {
    product_id: String,
    quantity: String,
}

fn quantity(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| "the quantity must be a whole number".to_owned())
}

pub async fn add_to_cart(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<AddForm>,
) -> PageResult {
    let back = format!("/products/{}", crate::api::encode(&form.product_id));
    let token = token(&visitor, &back)?;
    let added = match quantity(&form.quantity) {
        Ok(n) => state.api.add_to_cart(token, &form.product_id, n).await,
        Err(message) => Err(ApiError::Problem(crate::api::Problem {
            status: 422,
            detail: message.clone(),
            errors: vec![crate::api::FieldProblem {
                field: "quantity".into(),
                message,
            }],
            ..Default::default()
        })),
    };
    match added {
        Ok(_) => Ok(Redirect::to("/cart").into_response()),
        Err(ApiError::Problem(problem)) if problem.status == 422 || problem.status == 409 => {
            let product = state
                .api
                .product(visitor.token.as_deref(), &form.product_id)
                .await?;
            let layout = Layout::of(&state, &visitor, product.title.clone()).await;
            let page = ProductPage {
                layout,
                product,
                errors: FormErrors::of(problem),
            };
            Ok(with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct QuantityForm {
    quantity: String,
}

pub async fn set_quantity(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(product): Path<String>,
    Form(form): Form<QuantityForm>,
) -> PageResult {
    let token = token(&visitor, "/cart")?;
    let result = match quantity(&form.quantity) {
        Ok(n) => state.api.set_quantity(token, &product, n).await.map(|_| ()),
        Err(message) => return cart_page(&state, &visitor, Some(message)).await,
    };
    match result {
        Ok(()) => Ok(Redirect::to("/cart").into_response()),
        Err(ApiError::Problem(p)) if p.status == 422 || p.status == 404 => {
            cart_page(
                &state,
                &visitor,
                Some(p.field("quantity").unwrap_or(&p.detail).to_owned()),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_from_cart(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(product): Path<String>,
) -> PageResult {
    let token = token(&visitor, "/cart")?;
    match state.api.remove_from_cart(token, &product).await {
        Ok(()) => Ok(Redirect::to("/cart").into_response()),
        Err(ApiError::Problem(p)) if p.status == 404 => Ok(Redirect::to("/cart").into_response()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    checkout_key: String,
}

pub async fn checkout(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<CheckoutForm>,
) -> PageResult {
    let token = token(&visitor, "/cart")?;
    match state.api.checkout(token, &form.checkout_key).await {
        Ok(order) => Ok(Redirect::to(&format!("/orders/{}", order.id)).into_response()),
        Err(ApiError::Problem(p)) if p.status == 422 || p.status == 409 || p.status == 400 => {
            // A line the cart cannot order says which and why ("only 3 of … available").
            let message = if p.errors.is_empty() {
                p.detail
            } else {
                let reasons: Vec<&str> = p.errors.iter().map(|e| e.message.as_str()).collect();
                format!("Nothing was ordered: {}.", reasons.join("; "))
            };
            cart_page(&state, &visitor, Some(message)).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- orders and payment

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    layout: Layout,
    orders: Page<Order>,
    pager: Pager,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
}

pub async fn orders(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = token(&visitor, "/orders")?;
    // The layout first: its notification cursor must not be newer than the statuses shown.
    let layout = Layout::of(&state, &visitor, "Your orders").await;
    let orders = state
        .api
        .orders(token, query.page.unwrap_or(1).clamp(1, 1000))
        .await?;
    let pager = Pager::of("/orders", &[], &orders);
    Ok(render(&OrdersPage {
        layout,
        orders,
        pager,
    }))
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    layout: Layout,
    order: Order,
    /// Why the last action failed: next to the card field while the order can be paid, above
    /// the order otherwise.
    problem: Option<String>,
}

impl OrderPage {
    fn payable(&self) -> bool {
        payable(&self.order)
    }
}

/// How long the order page waits for a pending order's stock to be reserved.
const RESERVE_WAIT_SECS: u64 = 3;
/// How long paying waits for orders to complete the order it paid.
const PAID_WAIT_SECS: u64 = 5;

fn payable(order: &Order) -> bool {
    order.state == "awaiting_payment" || order.state == "pending"
}

/// The order page; `problem` is the status and message of an action that failed.
async fn order_page(
    state: &AppState,
    visitor: &Visitor,
    id: &str,
    problem: Option<(StatusCode, String)>,
) -> PageResult {
    let token = token(visitor, &format!("/orders/{}", crate::api::encode(id)))?;
    // The layout first: its notification cursor must not be newer than the status shown.
    let mut layout = Layout::of(state, visitor, "Your order").await;
    let mut order = state.api.order(token, id).await?;
    if order.state == "pending" {
        // Reserving takes a moment: wait for it (orders' long-poll) rather than show "pending"
        // and reload.
        if let Some(moved) = state
            .api
            .order_changed(token, id, order.version, RESERVE_WAIT_SECS)
            .await?
        {
            order = moved;
        }
    }
    let (status, mut problem) = match problem {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    if payable(&order) {
        layout = layout.with_stripe(state);
        // A declined card or a failed 3-D Secure step comes back here (POST-redirect-GET): say
        // why, from the payment itself.
        if problem.is_none() {
            match state.api.payment_failure(token, id).await {
                Ok(Some(reason)) => {
                    let reason = reason.trim().trim_end_matches('.');
                    problem = Some(format!(
                        "Your last payment did not go through: {reason}. Try again, or use another card."
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(error = %e, "the payment's state is not known; the page goes without it")
                }
            }
        }
    }
    let page = OrderPage {
        layout,
        order,
        problem,
    };
    Ok(with_status(render(&page), status))
}

pub async fn order(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> PageResult {
    order_page(&state, &visitor, &id, None).await
}

#[derive(Debug, Deserialize)]
pub struct PayForm {
    #[serde(default)]
    payment_method: String,
}

pub async fn pay(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<PayForm>,
) -> PageResult {
    let token = token(&visitor, &format!("/orders/{}", crate::api::encode(&id)))?;
    if form.payment_method.is_empty() {
        let message = "Enter your card: paying needs JavaScript for the secure card field.";
        let problem = (StatusCode::PAYMENT_REQUIRED, message.to_owned());
        return order_page(&state, &visitor, &id, Some(problem)).await;
    }
    match state.api.pay(token, &id, &form.payment_method).await {
        Ok(Paid::Succeeded) => {
            // orders completes the order a moment after the charge: follow it (long-poll) so
            // the page shows it paid, not still awaiting payment.
            let mut order = state.api.order(token, &id).await?;
            let deadline =
                tokio::time::Instant::now() + std::time::Duration::from_secs(PAID_WAIT_SECS);
            while order.state == "awaiting_payment" && tokio::time::Instant::now() < deadline {
                match state
                    .api
                    .order_changed(token, &id, order.version, PAID_WAIT_SECS)
                    .await?
                {
                    Some(moved) => order = moved,
                    None => break,
                }
            }
            Ok(Redirect::to(&format!("/orders/{}", crate::api::encode(&id))).into_response())
        }
        // The bank's step runs on the order page (GET), so reloading it never sends the payment
        // again; the client secret rides in the fragment, which never reaches a server or a log.
        Ok(Paid::RequiresAction(secret)) => Ok(Redirect::to(&format!(
            "/orders/{}#authenticate={secret}",
            crate::api::encode(&id)
        ))
        .into_response()),
        // Declined: the order page says why (from the payment), and a reload does not pay again.
        Err(ApiError::Problem(p)) if p.status == 402 => {
            Ok(Redirect::to(&format!("/orders/{}", crate::api::encode(&id))).into_response())
        }
        Err(ApiError::Problem(p)) if [409, 422].contains(&p.status) => {
            let problem = (status_of(&p), p.detail);
            order_page(&state, &visitor, &id, Some(problem)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn cancel(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> PageResult {
    let token = token(&visitor, &format!("/orders/{}", crate::api::encode(&id)))?;
    match state.api.cancel_order(token, &id).await {
        Ok(_) => Ok(Redirect::to(&format!("/orders/{}", crate::api::encode(&id))).into_response()),
        Err(ApiError::Problem(p)) if p.status == 409 => {
            let problem = (StatusCode::CONFLICT, p.detail);
            order_page(&state, &visitor, &id, Some(problem)).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- notifications

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    layout: Layout,
    items: Vec<Notification>,
}

pub async fn notifications(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> PageResult {
    let token = token(&visitor, "/notifications")?;
    let list = state.api.notifications(token, 50).await?;
    let layout = Layout::of(&state, &visitor, "Notifications").await;
    Ok(render(&NotificationsPage {
        layout,
        items: list.items,
    }))
}

pub async fn read_all(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> PageResult {
    let token = token(&visitor, "/notifications")?;
    state.api.read_all(token).await?;
    Ok(Redirect::to("/notifications").into_response())
}

#[cfg(test)]
mod tests {
    use super::minor_units;

    #[test]
    fn prices_are_typed_in_major_units() {
        assert_eq!(minor_units("12"), Ok(1200));
        assert_eq!(minor_units(" 12.5 "), Ok(1250));
        assert_eq!(minor_units("$0.07"), Ok(7));
        for bad in ["", "ten", "1.234", "-1", "1e3", ".5", "123456789"] {
            assert!(minor_units(bad).is_err(), "{bad:?}");
        }
    }
}
