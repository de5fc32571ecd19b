//! The catalog and a product's page.

use askama::Template;
use axum::{
    Extension,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::Deserialize;

use super::PageResult;
use crate::{
    AppState,
    api::{ApiError, Product},
    pages::{FormErrors, Layout, Pager, render, with_status},
    session::Visitor,
};

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
pub(super) fn minor_units(raw: &str) -> Result<i64, String> {
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
pub(super) struct ProductPage {
    pub(super) layout: Layout,
    pub(super) product: Product,
    pub(super) errors: FormErrors,
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
