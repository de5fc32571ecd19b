//! What the API shows of a product, its `ETag`, and reading `If-Match` / ids.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use storefront_events::Money;
use storefront_events::ProductId;
use storefront_kit::Error;

use crate::{cache::Rendered, store::Expect, store::ProductDoc};

/// One image of a product, as stored (re-encoded from the upload).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ProductImage")]
pub struct ImageView {
    /// `{uuid}.{jpg|png}`: names this image for good (never reused).
    pub key: String,
    /// Where browsers get it: `/api/products/{id}/images/{key}` on the shop's own origin, the
    /// same for as long as the image exists (cacheable for good: a key is never reused).
    pub url: String,
    /// The stored file's type: `image/jpeg`, or `image/png` when it has transparency.
    pub content_type: String,
    /// Pixels, of the stored image.
    pub width: u32,
    /// Pixels, of the stored image.
    pub height: u32,
    /// The stored file's size.
    pub bytes: u64,
    /// Whether this is the product's primary image (exactly one is, when it has any).
    pub primary: bool,
    /// A smaller copy (at most `IMAGE_THUMBNAIL_SIDE` pixels, 400 by default) for lists and
    /// small screens; null when the image is no larger than that, or was stored before
    /// thumbnails were made.
    pub thumbnail: Option<ThumbnailView>,
}

/// The smaller copy of an image, served like it.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ProductImageThumbnail")]
pub struct ThumbnailView {
    /// `/api/products/{id}/images/{uuid}-thumb.{jpg|png}`, cacheable for good like the image.
    pub url: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// The file's size.
    pub bytes: u64,
}

/// A product of the catalog. Its `ETag` is `"v{version}"`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductView {
    pub id: ProductId,
    pub title: String,
    pub description: String,
    /// A slug: `a-z`, `0-9` and inner `-`.
    pub category: String,
    pub price: Money,
    /// In the order they were uploaded; `primary` marks the primary one.
    pub images: Vec<ImageView>,
    /// What can still be bought (stock held for unpaid orders is not in it).
    pub available: i64,
    /// `available > 0`.
    pub in_stock: bool,
    /// Rises with every change (details, images, stock); the `ETag` is `"v{version}"`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The URL an image is served at.
pub fn image_url(product: ProductId, key: &str) -> String {
    format!("/api/products/{product}/images/{key}")
}

pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

pub fn view(product: &ProductDoc) -> ProductView {
    let mut images = Vec::with_capacity(product.images.len());
    for image in &product.images {
        images.push(ImageView {
            key: image.key.clone(),
            url: image_url(product.id, &image.key),
            content_type: image.content_type.clone(),
            width: image.width,
            height: image.height,
            bytes: image.bytes,
            primary: image.primary,
            thumbnail: image.thumbnail.as_ref().map(|small| ThumbnailView {
                url: image_url(product.id, &small.key),
                width: small.width,
                height: small.height,
                bytes: small.bytes,
            }),
        });
    }
    ProductView {
        id: product.id,
        title: product.title.clone(),
        description: product.description.clone(),
        category: product.category.clone(),
        price: product.price.clone(),
        images,
        available: product.stock.available,
        in_stock: product.stock.available > 0,
        version: product.version,
        created_at: product.created_at.to_chrono(),
        updated_at: product.updated_at.to_chrono(),
    }
}

/// The product as the JSON body and `ETag` of a response.
pub fn render(product: &ProductDoc) -> Result<Rendered, Error> {
    let body = serde_json::to_vec(&view(product)).map_err(Error::internal)?;
    Ok(Rendered {
        body: Bytes::from(body),
        etag: etag(product.version),
    })
}

pub fn json(status: StatusCode, body: Bytes, etag: Option<&str>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// A product id from the path; anything that is not one names no product.
pub fn product_id(raw: &str) -> Result<ProductId, Error> {
    raw.parse()
        .map_err(|_| Error::NotFound("no such product".into()))
}

/// The version a write changes, from `If-Match`: required (428) when `required`, else `Any` when
/// absent. `*` matches any version; an entity tag that is not one of ours (a weak one too) can
/// never match (412); a value that is no entity tag at all is a 400. Handlers call it once the
/// request is otherwise valid, so a bad body is its own 4xx whatever `If-Match` says.
pub fn if_match(headers: &HeaderMap, required: bool) -> Result<Expect, Error> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return if required {
            Err(Error::PreconditionRequired(
                "this write needs If-Match with the product's ETag, so it cannot overwrite a change you have not seen".into(),
            ))
        } else {
            Ok(Expect::Any)
        };
    };
    let value = value.to_str().unwrap_or_default().trim();
    if value == "*" {
        return Ok(Expect::Any);
    }
    if let Some(version) = value
        .strip_prefix("\"v")
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<i64>().ok())
    {
        return Ok(Expect::Version(version));
    }
    let tag = value.strip_prefix("W/").unwrap_or(value);
    if tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"') {
        Err(Error::PreconditionFailed(format!(
            "If-Match {value:?} is not a current ETag of this product (they look like \"v3\")"
        )))
    } else {
        Err(Error::BadRequest(format!(
            "If-Match {value:?} is neither * nor an entity tag in double quotes (like \"v3\")"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn if_match_reads_our_etags_only() {
        assert_eq!(
            if_match(&headers(Some("\"v3\"")), true).unwrap(),
            Expect::Version(3)
        );
        assert_eq!(if_match(&headers(Some("*")), true).unwrap(), Expect::Any);
        assert_eq!(if_match(&headers(None), false).unwrap(), Expect::Any);
        assert!(matches!(
            if_match(&headers(None), true),
            Err(Error::PreconditionRequired(_))
        ));
        for other in ["W/\"v3\"", "\"3\"", "\"vx\"", "\"\""] {
            assert!(
                matches!(
                    if_match(&headers(Some(other)), true),
                    Err(Error::PreconditionFailed(_))
                ),
                "{other:?}"
            );
        }
        for malformed in ["v3", "", "\"", "W/", "\"v3"] {
            assert!(
                matches!(
                    if_match(&headers(Some(malformed)), true),
                    Err(Error::BadRequest(_))
                ),
                "{malformed:?}"
            );
        }
    }
}
