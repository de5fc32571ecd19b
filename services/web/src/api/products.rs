//! products' API: the catalog, images, stock and the catalog's views.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use storefront_events::Money;

use super::{Api, ApiResult, Page, encode};

#[derive(Debug, Clone, Deserialize)]
pub struct Category {
    pub category: String,
    pub count: i64,
}

#[derive(Debug, Deserialize)]
struct Categories {
    items: Vec<Category>,
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

/// One uploaded file, passed on as it came.
pub struct Upload {
    pub file_name: String,
    pub content_type: String,
    pub bytes: bytes::Bytes,
}

impl Api {
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
}
