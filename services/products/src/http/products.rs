//! List, show, create, replace, update and delete products.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::ProductId;
use storefront_events::products::Stock;
use storefront_kit::{
    Error, Json,
    auth::{RequireAdmin, access_token},
    error::{Path, Query},
    validate::{self, paging},
};

use super::views::{ProductView, if_match, json, product_id, render, view};
use crate::{
    AppState,
    domain::{Category, Currency, Description, Fields, Price, Quantity, Title},
    store::{CategoryCount, Change, ListQuery, ProductDoc, Sort},
};

/// The filters, order and page of `GET /api/products`; any other parameter is a 400.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ProductListQuery")]
pub struct ListParams {
    /// Text in the title or description, case-insensitive, matched literally (no pattern
    /// syntax); at most 100 characters, no control characters.
    q: Option<String>,
    /// Only this category (a slug); empty means all.
    category: Option<String>,
    /// The lowest price, in minor units, inclusive.
    #[schemars(extend("minimum" = 0))]
    min_price: Option<i64>,
    /// The highest price, in minor units, inclusive; not below `min_price`.
    #[schemars(extend("minimum" = 0))]
    max_price: Option<i64>,
    /// `true`: only products with some available.
    in_stock: Option<bool>,
    /// The order: `newest` (the default), `price_asc`, `price_desc` or `popular` (most viewed
    /// first).
    #[schemars(extend("enum" = ["newest", "price_asc", "price_desc", "popular", null]))]
    sort: Option<String>,
    /// The page, from 1 (the default) to 1000.
    #[schemars(extend("type" = ["integer", "null"], "minimum" = 1, "maximum" = 1000))]
    page: Option<String>,
    /// Products per page, 1 to 100 (default 20).
    #[schemars(extend("type" = ["integer", "null"], "minimum" = 1, "maximum" = 100))]
    per_page: Option<String>,
}

/// A page of the catalog.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductList {
    items: Vec<ProductView>,
    page: u64,
    per_page: u64,
    /// How many products match, on all pages.
    total: u64,
}

fn list_query(params: ListParams) -> Result<ListQuery, Error> {
    let mut fields = Fields::default();
    let (page, size) = paging(
        params.page.as_deref(),
        params.per_page.as_deref(),
        &mut fields,
    );
    let category = match params.category.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => fields.check("category", Category::parse(raw)),
    };
    for (name, value) in [
        ("min_price", params.min_price),
        ("max_price", params.max_price),
    ] {
        if value.is_some_and(|v| v < 0) {
            fields.add(name, "a price bound is zero or more minor units");
        }
    }
    if let (Some(min), Some(max)) = (params.min_price, params.max_price)
        && min > max
    {
        fields.add("max_price", "max_price is below min_price");
    }
    let text = validate::search(params.q.as_deref(), &mut fields);
    let sort = match params.sort.as_deref() {
        None | Some("newest") => Sort::Newest,
        Some("price_asc") => Sort::PriceAsc,
        Some("price_desc") => Sort::PriceDesc,
        Some("popular") => Sort::Popular,
        Some(_) => {
            fields.add("sort", "one of newest, price_asc, price_desc, popular");
            Sort::Newest
        }
    };
    fields.finish()?;
    Ok(ListQuery {
        category: category.map(Category::into_inner),
        min_price: params.min_price,
        max_price: params.max_price,
        in_stock: params.in_stock.unwrap_or(false),
        text,
        sort,
        page,
        size,
    })
}

pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, Error> {
    let query = list_query(params)?;
    let key = format!("{query:?}");
    if let Some(body) = state.cache.list(&key) {
        return Ok(json(StatusCode::OK, body, None));
    }
    let found = state.store.list(&query).await?;
    let mut items = Vec::with_capacity(found.items.len());
    for product in &found.items {
        items.push(view(product));
    }
    let body = serde_json::to_vec(&ProductList {
        items,
        page: query.page,
        per_page: query.size,
        total: found.total,
    })
    .map_err(Error::internal)?;
    let body = Bytes::from(body);
    state.cache.keep_list(key, body.clone());
    Ok(json(StatusCode::OK, body, None))
}

/// Every category live products are in, by name.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ProductCategoryList")]
pub struct CategoryList {
    items: Vec<CategoryCount>,
}

/// `GET /api/products/categories`: the catalog's categories, as the products are (public).
pub async fn categories(State(state): State<AppState>) -> Result<Response, Error> {
    const KEY: &str = "categories";
    if let Some(body) = state.cache.list(KEY) {
        return Ok(json(StatusCode::OK, body, None));
    }
    let items = state.store.categories().await?;
    let body = Bytes::from(serde_json::to_vec(&CategoryList { items }).map_err(Error::internal)?);
    state.cache.keep_list(KEY.to_owned(), body.clone());
    Ok(json(StatusCode::OK, body, None))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Response, Error> {
    let id = product_id(&id)?;
    let rendered = match state.cache.product(id) {
        Some(rendered) => rendered,
        None => {
            let product = state
                .store
                .get(id)
                .await?
                .ok_or_else(|| Error::NotFound("no such product".into()))?;
            let rendered = render(&product)?;
            state.cache.keep_product(id, rendered.clone());
            rendered
        }
    };
    // A view is a customer's GET (a HEAD reads no product); an answer of 304 counts too, as a
    // browser that kept the product shows it again.
    if parts.method == axum::http::Method::GET && !by_an_admin(&state, &parts).await {
        state.analytics.counter.saw(id);
    }
    let headers = &parts.headers;
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == rendered.etag));
    if unchanged {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(etag) = HeaderValue::from_str(&rendered.etag) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return Ok(response);
    }
    Ok(json(StatusCode::OK, rendered.body, Some(&rendered.etag)))
}

/// Whether the read comes with an admin's token: an admin at work is not a customer's view. The
/// signature is checked, the revocation list is not (a revoked admin token only means one view
/// not counted, and a Redis round trip on the busiest read would cost more). The read is public,
/// so a token that does not verify only makes it a customer's.
async fn by_an_admin(state: &AppState, parts: &Parts) -> bool {
    match access_token(parts) {
        Some(token) => state
            .authenticator
            .verify_signature(&token)
            .await
            .is_ok_and(|claims| claims.is_admin()),
        None => false,
    }
}

/// A price as a write gives it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ProductPriceInput")]
pub struct PriceBody {
    /// Integer minor units (cents), 1 to 100,000,000; a float is a 400.
    amount: i64,
    /// One of USD, EUR, GBP, CHF, CAD, AUD, SEK, NOK, DKK, PLN (any case).
    currency: String,
}

/// A new product.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateProductBody")]
pub struct CreateBody {
    /// 1 to 200 characters, trimmed, no control characters.
    title: String,
    /// Up to 5,000 characters; line breaks allowed. Default empty.
    #[serde(default)]
    description: String,
    /// A slug: 1 to 50 of `a-z`, `0-9` and inner `-`; lower-cased.
    category: String,
    price: PriceBody,
    /// Initial stock, 0 to 1,000,000; default 0.
    #[serde(default)]
    stock: i64,
}

fn price(fields: &mut Fields, body: &PriceBody) -> Option<Price> {
    let currency = fields.check("price.currency", Currency::parse(&body.currency))?;
    fields.check("price.amount", Price::new(body.amount, currency))
}

/// The response to a write: the product, its `ETag`, and `Location` for a new one.
async fn written(
    state: &AppState,
    product: &ProductDoc,
    status: StatusCode,
) -> Result<Response, Error> {
    state.cache.invalidate(product.id);
    let rendered = render(product)?;
    let mut response = json(status, rendered.body, Some(&rendered.etag));
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/api/products/{}", product.id))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

pub async fn create(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    Json(body): Json<CreateBody>,
) -> Result<Response, Error> {
    let mut fields = Fields::default();
    let title = fields.check("title", Title::parse(&body.title));
    let description = fields.check("description", Description::parse(&body.description));
    let category = fields.check("category", Category::parse(&body.category));
    let price = price(&mut fields, &body.price);
    let stock = fields.check("stock", Quantity::new(body.stock));
    fields.finish()?;
    let (Some(title), Some(description), Some(category), Some(price), Some(stock)) =
        (title, description, category, price, stock)
    else {
        return Err(Error::internal("validated fields missing"));
    };
    let now = mongodb::bson::DateTime::now();
    let product = ProductDoc {
        id: ProductId::new(),
        title: title.into_inner(),
        description: description.into_inner(),
        category: category.into_inner(),
        price: price.money(),
        images: Vec::new(),
        stock: Stock {
            available: stock.get(),
            reserved: 0,
            sold: 0,
        },
        deleted: false,
        version: 1,
        created_at: now,
        updated_at: now,
        views: 0,
    };
    state.store.create(&product, &admin.sub.to_string()).await?;
    written(&state, &product, StatusCode::CREATED).await
}

/// Every detail of a product (the rules of `CreateProductBody`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ReplaceProductBody")]
pub struct ReplaceBody {
    title: String,
    description: String,
    category: String,
    price: PriceBody,
}

/// The details to change (the rules of `CreateProductBody`): at least one; absent or `null`
/// leaves a detail as it is.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UpdateProductBody")]
pub struct UpdateBody {
    title: Option<String>,
    description: Option<String>,
    category: Option<String>,
    price: Option<PriceBody>,
}

/// The validated details of a write; `None` leaves a field as it is.
#[derive(Default)]
struct Details {
    title: Option<Title>,
    description: Option<Description>,
    category: Option<Category>,
    price: Option<Price>,
}

impl UpdateBody {
    fn details(&self) -> Result<Details, Error> {
        let mut fields = Fields::default();
        let details = Details {
            title: self
                .title
                .as_deref()
                .and_then(|t| fields.check("title", Title::parse(t))),
            description: self
                .description
                .as_deref()
                .and_then(|d| fields.check("description", Description::parse(d))),
            category: self
                .category
                .as_deref()
                .and_then(|c| fields.check("category", Category::parse(c))),
            price: self.price.as_ref().and_then(|p| price(&mut fields, p)),
        };
        fields.finish()?;
        Ok(details)
    }
}

impl Details {
    fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.category.is_none()
            && self.price.is_none()
    }

    fn apply(&self, product: &mut ProductDoc) {
        if let Some(title) = &self.title {
            product.title = title.clone().into_inner();
        }
        if let Some(description) = &self.description {
            product.description = description.clone().into_inner();
        }
        if let Some(category) = &self.category {
            product.category = category.clone().into_inner();
        }
        if let Some(price) = &self.price {
            product.price = price.money();
        }
    }
}

async fn apply_details(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    details: Details,
) -> Result<Response, Error> {
    let id = product_id(id)?;
    let expect = if_match(headers, true)?;
    let product = state
        .store
        .modify(id, expect, |product| {
            details.apply(product);
            Ok(Change::Updated)
        })
        .await?;
    written(state, &product, StatusCode::OK).await
}

/// `PUT`: every detail, replaced.
pub async fn replace(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ReplaceBody>,
) -> Result<Response, Error> {
    let details = UpdateBody {
        title: Some(body.title),
        description: Some(body.description),
        category: Some(body.category),
        price: Some(body.price),
    }
    .details()?;
    apply_details(&state, &id, &headers, details).await
}

/// `PATCH`: the details given, changed.
pub async fn update(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<UpdateBody>,
) -> Result<Response, Error> {
    let details = body.details()?;
    if details.is_empty() {
        return Err(Error::BadRequest(
            "give at least one of title, description, category, price".into(),
        ));
    }
    apply_details(&state, &id, &headers, details).await
}

/// Soft delete: gone from the shop, kept for the orders that name it.
pub async fn delete(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Error> {
    let id = product_id(&id)?;
    let expect = if_match(&headers, true)?;
    state
        .store
        .modify(id, expect, |_| Ok(Change::Deleted))
        .await?;
    state.cache.invalidate(id);
    Ok(StatusCode::NO_CONTENT)
}
