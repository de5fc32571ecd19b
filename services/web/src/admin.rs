//! `/admin`: products (search, create, edit with version conflicts shown, delete, images —
//! upload, delete, primary —, stock and its history), orders (by status, each with its lines,
//! payment and timeline, customers by name), users (search, block/unblock). Admins only; every
//! call goes out with the admin's token, so the services check the role again.

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Multipart, Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    AppState,
    api::{
        ApiError, CONSUMERS, DeadLetterList, LedgerEntry, Order, Page, Payment, Product, Upload,
        User, encode,
    },
    pages::{
        FormErrors, Layout, PageError, Pager, admin_token, parse_price, price_text, render,
        status_of, with_status,
    },
    session::Visitor,
};

type PageResult = Result<Response, PageError>;

#[derive(Template)]
#[template(path = "admin/products.html")]
struct ProductsPage {
    layout: Layout,
    products: Page<Product>,
    q: String,
    note: Option<String>,
    pager: Pager,
    /// A product was just deleted.
    deleted: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
    status: Option<String>,
    #[serde(default)]
    q: String,
    /// What was just done, for the message that says so.
    saved: Option<String>,
}

impl PageQuery {
    fn page(&self) -> i64 {
        self.page.unwrap_or(1).clamp(1, 1000)
    }
}

/// A search as the admin typed it, or a note that it cannot be one: the services' own rule
/// (`storefront_kit::validate::search`), said as a sentence; the list then shows everything,
/// with the note.
fn search_text(q: &str) -> (String, Option<String>) {
    let mut fields = storefront_kit::validate::Fields::default();
    let text = storefront_kit::validate::search(Some(q), &mut fields);
    match fields.finish() {
        Ok(()) => (text.unwrap_or_default(), None),
        Err(storefront_kit::Error::Validation(errors)) => (
            String::new(),
            errors
                .first()
                .map(|e| format!("{}.", crate::pages::capitalised(&e.message))),
        ),
        Err(other) => (String::new(), Some(other.to_string())),
    }
}

pub async fn products(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    admin_token(&visitor, "/admin/products")?;
    let mut api_query = vec![
        ("page".into(), query.page().to_string()),
        ("per_page".into(), "50".into()),
    ];
    let (q, note) = search_text(&query.q);
    let q = q.as_str();
    if !q.is_empty() {
        api_query.push(("q".into(), q.to_owned()));
    }
    let products = state.api.products(&api_query).await?;
    let layout = Layout::of(&state, &visitor, "Admin · Products").await;
    let pager = Pager::of("/admin/products", &[("q", q)], &products);
    Ok(render(&ProductsPage {
        layout,
        products,
        q: q.to_owned(),
        note,
        pager,
        deleted: query.saved.as_deref() == Some("deleted"),
    }))
}

/// The product form's fields as typed (kept when the form comes back with errors).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ProductForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    stock: String,
    /// The version the admin edited (edit only).
    #[serde(default)]
    version: String,
}

impl ProductForm {
    fn of(product: &Product) -> Self {
        ProductForm {
            title: product.title.clone(),
            description: product.description.clone(),
            category: product.category.clone(),
            price: price_text(product.price.amount),
            currency: product.price.currency.clone(),
            stock: String::new(),
            version: product.version.to_string(),
        }
    }

    /// The JSON body for products, or the field errors web finds itself.
    fn body(&self, with_stock: bool) -> Result<serde_json::Value, FormErrors> {
        let mut errors = FormErrors::none();
        let amount = parse_price(&self.price)
            .inspect_err(|e| errors.add("price", e))
            .unwrap_or(0);
        let stock = if with_stock && !self.stock.trim().is_empty() {
            self.stock
                .trim()
                .parse::<i64>()
                .inspect_err(|_| errors.add("stock", "must be a whole number"))
                .ok()
        } else {
            None
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut body = json!({
            "title": self.title,
            "description": self.description,
            "category": self.category.trim(),
            "price": { "amount": amount, "currency": self.currency.trim().to_uppercase() },
        });
        if let Some(stock) = stock {
            body["stock"] = json!(stock);
        }
        Ok(body)
    }
}

#[derive(Template)]
#[template(path = "admin/product_form.html")]
struct ProductFormPage {
    layout: Layout,
    /// `None` for a new product.
    product: Option<Product>,
    form: ProductForm,
    errors: FormErrors,
    /// Someone else saved first: what they saved.
    conflict: Option<Product>,
    stock_errors: FormErrors,
    image_errors: FormErrors,
    /// The catalog's categories, offered as the admin types one (a new one is fine too).
    categories: Vec<String>,
    /// What was just saved, said above the form.
    saved: Option<&'static str>,
    /// The newest stock movements (edit only).
    ledger: Vec<LedgerEntry>,
    /// A delete was refused: the product changed since the admin looked (now this version).
    stale_delete: Option<i64>,
}

/// What the product page says after each kind of change (`?saved=`).
fn saved_message(kind: Option<&str>) -> Option<&'static str> {
    Some(match kind? {
        "details" => "Saved.",
        "stock" => "Stock changed.",
        "image" => "Image added.",
        "primary" => "Primary image chosen.",
        "image-deleted" => "Image deleted.",
        _ => return None,
    })
}

/// Back to the product's page, saying what was done.
fn saved(id: &str, kind: &str) -> Response {
    Redirect::to(&format!("/admin/products/{}?saved={kind}", encode(id))).into_response()
}

impl ProductFormPage {
    async fn new(
        state: &AppState,
        layout: Layout,
        product: Option<Product>,
        form: ProductForm,
    ) -> Self {
        ProductFormPage {
            layout,
            product,
            form,
            errors: FormErrors::none(),
            conflict: None,
            stock_errors: FormErrors::none(),
            image_errors: FormErrors::none(),
            categories: state.api.category_names().await,
            saved: None,
            ledger: Vec::new(),
            stale_delete: None,
        }
    }

    /// The page of an existing product, with its stock history.
    async fn edit(state: &AppState, layout: Layout, token: &str, product: Product) -> Self {
        // The history is a help, not the page: a products hiccup leaves it out.
        let ledger = state
            .api
            .stock_history(token, &product.id)
            .await
            .unwrap_or_default();
        let form = ProductForm::of(&product);
        let mut page = ProductFormPage::new(state, layout, Some(product), form).await;
        page.ledger = ledger;
        page
    }
}

pub async fn new_product(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
) -> PageResult {
    admin_token(&visitor, "/admin/products/new")?;
    let layout = Layout::of(&state, &visitor, "Admin · New product").await;
    let form = ProductForm {
        currency: "USD".into(),
        stock: "0".into(),
        ..ProductForm::default()
    };
    Ok(render(
        &ProductFormPage::new(&state, layout, None, form).await,
    ))
}

pub async fn create_product(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<ProductForm>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/products/new")?;
    let errors = match form.body(true) {
        Ok(body) => match state.api.create_product(token, &body).await {
            Ok(product) => {
                return Ok(Redirect::to(&format!("/admin/products/{}", product.id)).into_response());
            }
            Err(ApiError::Problem(p)) => FormErrors::of(p),
            Err(e) => return Err(e.into()),
        },
        Err(errors) => errors,
    };
    let layout = Layout::of(&state, &visitor, "Admin · New product").await;
    let mut page = ProductFormPage::new(&state, layout, None, form).await;
    page.errors = errors;
    Ok(with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY))
}

pub async fn edit_product(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, &format!("/admin/products/{}", encode(&id)))?;
    let product = state.api.product(Some(token), &id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let mut page = ProductFormPage::edit(&state, layout, token, product).await;
    page.saved = saved_message(query.saved.as_deref());
    Ok(render(&page))
}

pub async fn update_product(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<ProductForm>,
) -> PageResult {
    let token = admin_token(&visitor, &format!("/admin/products/{}", encode(&id)))?;
    let version: i64 = form.version.trim().parse().unwrap_or(0);
    let mut conflict = None;
    let errors = match form.body(false) {
        Ok(body) => match state.api.update_product(token, &id, version, &body).await {
            Ok(product) => return Ok(saved(&product.id, "details")),
            Err(ApiError::Problem(p)) if p.status == 412 => {
                conflict = Some(state.api.product(Some(token), &id).await?);
                FormErrors::of(p)
            }
            Err(ApiError::Problem(p)) if p.status == 404 => return Err(PageError::NotFound),
            Err(ApiError::Problem(p)) => FormErrors::of(p),
            Err(e) => return Err(e.into()),
        },
        Err(errors) => errors,
    };
    let product = state.api.product(Some(token), &id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let status = if conflict.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut page = ProductFormPage::edit(&state, layout, token, product).await;
    page.form = form;
    page.errors = errors;
    page.conflict = conflict;
    Ok(with_status(render(&page), status))
}

#[derive(Debug, Deserialize)]
pub struct StockForm {
    #[serde(default)]
    adjust: String,
    #[serde(default)]
    reason: String,
}

pub async fn adjust_stock(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<StockForm>,
) -> PageResult {
    let token = admin_token(&visitor, &format!("/admin/products/{}", encode(&id)))?;
    let stock_errors = match form.adjust.trim().parse::<i64>() {
        Ok(delta) => {
            let body = json!({ "adjust": delta, "reason": form.reason });
            match state.api.adjust_stock(token, &id, &body).await {
                Ok(product) => return Ok(saved(&product.id, "stock")),
                Err(ApiError::Problem(p)) if p.status == 404 => return Err(PageError::NotFound),
                Err(ApiError::Problem(p)) => FormErrors::of(p),
                Err(e) => return Err(e.into()),
            }
        }
        Err(_) => {
            let mut errors = FormErrors::none();
            errors.add("adjust", "enter a whole number, such as 5 or -2");
            errors
        }
    };
    let product = state.api.product(Some(token), &id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let mut page = ProductFormPage::edit(&state, layout, token, product).await;
    page.stock_errors = stock_errors;
    Ok(with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY))
}

pub async fn upload_image(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> PageResult {
    let token = admin_token(&visitor, &format!("/admin/products/{}", encode(&id)))?;
    let mut upload = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("file") {
            let file_name = field.file_name().unwrap_or("image").to_owned();
            let content_type = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_owned();
            match field.bytes().await {
                Ok(bytes) if !bytes.is_empty() => {
                    upload = Some(Upload {
                        file_name,
                        content_type,
                        bytes,
                    })
                }
                _ => {}
            }
        }
    }
    let image_errors = match upload {
        Some(upload) => match state.api.upload_image(token, &id, upload).await {
            Ok(product) => return Ok(saved(&product.id, "image")),
            Err(ApiError::Problem(p)) if p.status == 404 => return Err(PageError::NotFound),
            Err(ApiError::Problem(p)) => FormErrors::of(p),
            Err(e) => return Err(e.into()),
        },
        None => {
            let mut errors = FormErrors::none();
            errors.add("file", "choose an image file (JPEG, PNG or WebP)");
            errors
        }
    };
    let product = state.api.product(Some(token), &id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let mut page = ProductFormPage::edit(&state, layout, token, product).await;
    page.image_errors = image_errors;
    Ok(with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY))
}

/// `POST /admin/products/{id}/images/{key}/{primary|delete}`.
pub async fn change_image(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path((id, key, action)): Path<(String, String, String)>,
) -> PageResult {
    let token = admin_token(&visitor, &format!("/admin/products/{}", encode(&id)))?;
    let (primary, kind) = match action.as_str() {
        "primary" => (true, "primary"),
        "delete" => (false, "image-deleted"),
        _ => return Err(PageError::NotFound),
    };
    let (image_errors, status) = match state.api.change_image(token, &id, &key, primary).await {
        Ok(product) => return Ok(saved(&product.id, kind)),
        Err(ApiError::Problem(p)) if p.status == 404 => return Err(PageError::NotFound),
        Err(ApiError::Problem(p)) => {
            let status = status_of(&p);
            (FormErrors::of(p), status)
        }
        Err(e) => return Err(e.into()),
    };
    let product = state.api.product(Some(token), &id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let mut page = ProductFormPage::edit(&state, layout, token, product).await;
    page.image_errors = image_errors;
    Ok(with_status(render(&page), status))
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    version: String,
}

/// `POST /admin/products/{id}/delete`: withdraws the product the admin saw (its version), or
/// shows what changed since.
pub async fn delete_product(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> PageResult {
    let token = admin_token(&visitor, &format!("/admin/products/{}", encode(&id)))?;
    let version: i64 = form.version.trim().parse().unwrap_or(0);
    let (errors, stale) = match state.api.delete_product(token, &id, version).await {
        Ok(()) => return Ok(Redirect::to("/admin/products?saved=deleted").into_response()),
        Err(ApiError::Problem(p)) if p.status == 404 => return Err(PageError::NotFound),
        Err(ApiError::Problem(p)) => {
            let stale = p.status == 412;
            (FormErrors::of(p), stale)
        }
        Err(e) => return Err(e.into()),
    };
    let product = state.api.product(Some(token), &id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let mut page = ProductFormPage::edit(&state, layout, token, product).await;
    if stale {
        // Someone changed it since the admin looked: the page now shows what it is, and
        // deleting it is a second, informed press.
        page.stale_delete = page.product.as_ref().map(|p| p.version);
    } else {
        page.errors = errors;
    }
    Ok(with_status(render(&page), StatusCode::CONFLICT))
}

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct OrdersPage {
    layout: Layout,
    orders: Page<Order>,
    status: String,
    statuses: Vec<&'static str>,
    customers: std::collections::HashMap<String, User>,
    pager: Pager,
}

impl OrdersPage {
    /// `Name <email>` of an order's customer, or their id if auth did not say.
    fn customer(&self, order: &Order) -> String {
        customer_text(self.customers.get(&order.user_id), &order.user_id)
    }
}

fn customer_text(user: Option<&User>, id: &str) -> String {
    match user {
        Some(user) if user.name.is_empty() => user.email.clone(),
        Some(user) => format!("{} <{}>", user.name, user.email),
        None => id.to_owned(),
    }
}

pub async fn orders(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/orders")?;
    let page = query.page();
    let status = query.status.unwrap_or_default();
    let orders = state
        .api
        .all_orders(token, Some(status.as_str()).filter(|s| !s.is_empty()), page)
        .await?;
    let ids: Vec<&str> = orders.items.iter().map(|o| o.user_id.as_str()).collect();
    // Names are a help: without auth the list still shows each customer's id.
    let customers = state.api.users_by_id(token, &ids).await.unwrap_or_default();
    let layout = Layout::of(&state, &visitor, "Admin · Orders").await;
    let pager = Pager::of("/admin/orders", &[("status", &status)], &orders);
    Ok(render(&OrdersPage {
        layout,
        orders,
        status,
        statuses: vec!["pending", "awaiting_payment", "completed", "cancelled"],
        customers,
        pager,
    }))
}

#[derive(Template)]
#[template(path = "admin/order.html")]
struct OrderPage {
    layout: Layout,
    order: Order,
    customer: String,
    /// The order's payment (`None`: none was made), or why payments could not say.
    payment: Result<Option<Payment>, String>,
}

/// `GET /admin/orders/{id}`: one order with its lines, charges, payment and timeline.
pub async fn order(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> PageResult {
    let token = admin_token(&visitor, &format!("/admin/orders/{}", encode(&id)))?;
    let order = match state.api.order(token, &id).await {
        Ok(order) => order,
        Err(ApiError::Problem(p)) if p.status == 404 => return Err(PageError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let users = state
        .api
        .users_by_id(token, &[order.user_id.as_str()])
        .await
        .unwrap_or_default();
    let customer = customer_text(users.get(&order.user_id), &order.user_id);
    // Payments down leaves its part of the page blank, not the page.
    let payment = state
        .api
        .payment(token, &order.id)
        .await
        .map_err(|e| e.to_string());
    let layout = Layout::of(&state, &visitor, format!("Admin · Order {}", order.label())).await;
    Ok(render(&OrderPage {
        layout,
        order,
        customer,
        payment,
    }))
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Page<User>,
    me: String,
    q: String,
    note: Option<String>,
    pager: Pager,
}

pub async fn users(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/users")?;
    let (q, note) = search_text(&query.q);
    let q = q.as_str();
    let users = state.api.users(token, query.page(), q).await?;
    let layout = Layout::of(&state, &visitor, "Admin · Users").await;
    let me = visitor
        .claims
        .as_ref()
        .map(|c| c.sub.to_string())
        .unwrap_or_default();
    let pager = Pager::of("/admin/users", &[("q", q)], &users);
    Ok(render(&UsersPage {
        layout,
        users,
        me,
        q: q.to_owned(),
        note,
        pager,
    }))
}

pub async fn block(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/users")?;
    let blocked = match action.as_str() {
        "block" => true,
        "unblock" => false,
        _ => return Err(PageError::NotFound),
    };
    state.api.set_blocked(token, &id, blocked).await?;
    Ok(Redirect::to("/admin/users").into_response())
}

/// One consuming service's part of the dead-letter page.
struct Group {
    service: &'static str,
    /// Its dead letters, or why they could not be read.
    letters: Result<DeadLetterList, String>,
}

impl Group {
    /// `Products`, `Cart`, …
    fn title(&self) -> String {
        crate::pages::capitalised(self.service)
    }
}

#[derive(Template)]
#[template(path = "admin/dead_letters.html")]
struct DeadLettersPage {
    layout: Layout,
    groups: Vec<Group>,
    /// What was just done, or why it could not be.
    done: Option<String>,
    problem: Option<String>,
}

async fn dead_letters_page(
    state: &AppState,
    visitor: &Visitor,
    token: &str,
    done: Option<String>,
    problem: Option<String>,
) -> Response {
    let groups = futures::future::join_all(CONSUMERS.into_iter().map(|service| async move {
        Group {
            service,
            letters: state
                .api
                .dead_letters(token, service)
                .await
                .map_err(|e| e.to_string()),
        }
    }))
    .await;
    let layout = Layout::of(state, visitor, "Admin · Dead letters").await;
    render(&DeadLettersPage {
        layout,
        groups,
        done,
        problem,
    })
}

/// `GET /admin/dead-letters`: every consumer group's dead letters, with replay and discard.
pub async fn dead_letters(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/dead-letters")?;
    let done = match query.saved.as_deref() {
        Some("replay") => Some("Replayed: the event was applied.".to_owned()),
        Some("replay-duplicate") => {
            Some("Replayed: it had been applied already, so nothing changed.".to_owned())
        }
        Some("discard") => Some("Discarded.".to_owned()),
        _ => None,
    };
    Ok(dead_letters_page(&state, &visitor, token, done, None).await)
}

/// `POST /admin/dead-letters/{service}/{id}/{replay|discard}`.
pub async fn handle_dead_letter(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Path((service, id, action)): Path<(String, String, String)>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/dead-letters")?;
    if !CONSUMERS.contains(&service.as_str()) || !["replay", "discard"].contains(&action.as_str()) {
        return Err(PageError::NotFound);
    }
    match state
        .api
        .handle_dead_letter(token, &service, &id, &action)
        .await
    {
        Ok(letter) => {
            let said = match letter.outcome.as_deref() {
                Some("duplicate") => "replay-duplicate",
                _ => action.as_str(),
            };
            Ok(Redirect::to(&format!("/admin/dead-letters?saved={said}")).into_response())
        }
        Err(ApiError::Problem(p)) if p.status == 404 => Err(PageError::NotFound),
        Err(ApiError::Problem(p)) if p.status == 409 => {
            let page = dead_letters_page(&state, &visitor, token, None, Some(p.detail)).await;
            Ok(with_status(page, StatusCode::CONFLICT))
        }
        Err(e) => Err(e.into()),
    }
}
