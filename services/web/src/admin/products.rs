//! The catalog as the admin keeps it: the list, a product's form, stock, images, deletion.

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Multipart, Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{PageQuery, PageResult, search_text};
use crate::{
    AppState,
    api::{ApiError, LedgerEntry, Page, Product, Upload, encode},
    pages::{
        FormErrors, Layout, PageError, Pager, admin_token, parse_price, price_text, render,
        status_of, with_status,
    },
    session::Visitor,
};

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
pub(super) fn saved(id: &str, kind: &str) -> Response {
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
