//! `/admin`: products (create, edit with version conflicts shown, image upload, stock), orders
//! (by status), users (block/unblock). Admins only; every call goes out with the admin's token, so
//! the services check the role again.

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
    api::{ApiError, Order, Page, Product, Upload, User, encode},
    pages::{
        FormErrors, Layout, PageError, admin_token, parse_price, price_text, render, with_status,
    },
    session::Visitor,
};

type PageResult = Result<Response, PageError>;

pub async fn home() -> Redirect {
    Redirect::to("/admin/products")
}

#[derive(Template)]
#[template(path = "admin/products.html")]
struct ProductsPage {
    layout: Layout,
    products: Page<Product>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
    status: Option<String>,
}

pub async fn products(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    admin_token(&visitor, "/admin/products")?;
    let page = query.page.unwrap_or(1).clamp(1, 1000);
    let products = state
        .api
        .products(&[
            ("page".into(), page.to_string()),
            ("per_page".into(), "50".into()),
        ])
        .await?;
    let layout = Layout::of(&state, &visitor, "Admin · Products").await;
    Ok(render(&ProductsPage { layout, products }))
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
        }
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
) -> PageResult {
    admin_token(&visitor, &format!("/admin/products/{}", encode(&id)))?;
    let product = state.api.product(&id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let form = ProductForm::of(&product);
    Ok(render(
        &ProductFormPage::new(&state, layout, Some(product), form).await,
    ))
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
            Ok(product) => {
                return Ok(Redirect::to(&format!("/admin/products/{}", product.id)).into_response());
            }
            Err(ApiError::Problem(p)) if p.status == 412 => {
                conflict = Some(state.api.product(&id).await?);
                FormErrors::of(p)
            }
            Err(ApiError::Problem(p)) if p.status == 404 => return Err(PageError::NotFound),
            Err(ApiError::Problem(p)) => FormErrors::of(p),
            Err(e) => return Err(e.into()),
        },
        Err(errors) => errors,
    };
    let product = state.api.product(&id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let status = if conflict.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut page = ProductFormPage::new(&state, layout, Some(product), form).await;
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
                Ok(product) => {
                    return Ok(
                        Redirect::to(&format!("/admin/products/{}", product.id)).into_response()
                    );
                }
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
    let product = state.api.product(&id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let form_fields = ProductForm::of(&product);
    let mut page = ProductFormPage::new(&state, layout, Some(product), form_fields).await;
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
            Ok(product) => {
                return Ok(Redirect::to(&format!("/admin/products/{}", product.id)).into_response());
            }
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
    let product = state.api.product(&id).await?;
    let layout = Layout::of(&state, &visitor, format!("Admin · {}", product.title)).await;
    let form_fields = ProductForm::of(&product);
    let mut page = ProductFormPage::new(&state, layout, Some(product), form_fields).await;
    page.image_errors = image_errors;
    Ok(with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY))
}

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct OrdersPage {
    layout: Layout,
    orders: Page<Order>,
    status: String,
    statuses: Vec<&'static str>,
}

pub async fn orders(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/orders")?;
    let status = query.status.unwrap_or_default();
    let orders = state
        .api
        .all_orders(
            token,
            Some(status.as_str()).filter(|s| !s.is_empty()),
            query.page.unwrap_or(1).clamp(1, 1000),
        )
        .await?;
    let layout = Layout::of(&state, &visitor, "Admin · Orders").await;
    Ok(render(&OrdersPage {
        layout,
        orders,
        status,
        statuses: vec!["pending", "awaiting_payment", "completed", "cancelled"],
    }))
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Page<User>,
    me: String,
}

pub async fn users(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let token = admin_token(&visitor, "/admin/users")?;
    let users = state
        .api
        .users(token, query.page.unwrap_or(1).clamp(1, 1000))
        .await?;
    let layout = Layout::of(&state, &visitor, "Admin · Users").await;
    let me = visitor
        .claims
        .as_ref()
        .map(|c| c.sub.to_string())
        .unwrap_or_default();
    Ok(render(&UsersPage { layout, users, me }))
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
