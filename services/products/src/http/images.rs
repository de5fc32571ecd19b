//! `/api/products/{id}/images`: upload (multipart), serve, delete, choose the primary image.
//!
//! An upload is checked from its bytes (JPEG, PNG or WebP; size; dimensions; pixels), decoded and
//! encoded again (services/products/src/domain/image.rs), stored in the bucket, then added to the
//! product. If the product write fails, the stored object is removed again; a removed image's
//! object goes after the product no longer names it. Images are served from here, under the
//! shop's origin: an explicit type, `nosniff`, and cacheable for good (a key is never reused).

use axum::{
    extract::{
        Multipart, State,
        multipart::{MultipartError, MultipartRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use storefront_events::ProductId;
use storefront_kit::{Error, auth::RequireAdmin, error::Path};
use uuid::Uuid;

use super::views::{if_match, json, product_id, render};
use crate::{
    AppState,
    domain::{ImageError, ImageKind},
    s3::Images,
    store::{Change, ProductDoc, StoreError},
};
use storefront_events::products::ImageRef;

/// A product keeps at most this many images.
pub const MAX_IMAGES: usize = 12;

fn multipart_error(e: MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge
    } else {
        Error::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// The `file` part and the optional `primary` part.
async fn read_upload(mut multipart: Multipart) -> Result<(Bytes, bool), Error> {
    let mut file = None;
    let mut primary = false;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") => file = Some(field.bytes().await.map_err(multipart_error)?),
            Some("primary") => {
                let value = field.text().await.map_err(multipart_error)?;
                primary = match value.trim() {
                    "true" | "1" | "on" => true,
                    "false" | "0" | "" => false,
                    _ => return Err(Error::field("primary", "true or false")),
                };
            }
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "unexpected part {other:?}: send `file` and optionally `primary`"
                )));
            }
            None => return Err(Error::BadRequest("a part without a name".into())),
        }
    }
    let file = file.ok_or_else(|| Error::field("file", "attach the image as the `file` part"))?;
    Ok((file, primary))
}

fn image_error(e: ImageError) -> Error {
    match e {
        ImageError::TooLarge { .. } => Error::PayloadTooLarge,
        ImageError::UnsupportedType => Error::UnsupportedMediaType(e.to_string()),
        other => Error::field("file", other.to_string()),
    }
}

fn set_primary(product: &mut ProductDoc, key: &str) {
    for image in &mut product.images {
        image.primary = image.key == key;
    }
}

pub async fn upload(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, Error> {
    let id = product_id(&id)?;
    let multipart = multipart.map_err(|e| {
        Error::UnsupportedMediaType(format!(
            "send the image as multipart/form-data with a `file` part ({})",
            e.body_text()
        ))
    })?;
    // Refuse early for an unknown product, before reading and storing the file.
    if state.store.get(id).await?.is_none() {
        return Err(Error::NotFound("no such product".into()));
    }
    let (bytes, primary) = read_upload(multipart).await?;
    let rules = state.rules;
    let prepared = tokio::task::spawn_blocking(move || rules.prepare(&bytes))
        .await
        .map_err(Error::internal)?
        .map_err(image_error)?;
    let expect = if_match(&headers, false)?;
    // Stored and recorded in a task of its own: a client that goes away midway does not cut it
    // between storing the files and recording them (or removing them again), which would leave
    // objects no product names.
    let task = tokio::spawn(store_and_record(
        state.clone(),
        id,
        expect,
        prepared,
        primary,
    ));
    let product = task.await.map_err(Error::internal)??;
    state.cache.invalidate(id);
    let rendered = render(&product)?;
    Ok(json(
        StatusCode::CREATED,
        rendered.body,
        Some(&rendered.etag),
    ))
}

/// Stores an upload's files and adds the image to the product; if either fails, every file of
/// the upload is removed again (a failed put may have stored its object anyway).
async fn store_and_record(
    state: AppState,
    id: ProductId,
    expect: crate::store::Expect,
    prepared: crate::domain::Prepared,
    primary: bool,
) -> Result<ProductDoc, Error> {
    let image = prepared.reference(false);
    let key = image.key.clone();
    let objects = object_keys(id, &image);
    for file in prepared.into_files(&image) {
        let object = Images::object_key(id, &file.key);
        let put = state
            .images
            .put(&object, Bytes::from(file.bytes), file.content_type)
            .await;
        if let Err(e) = put {
            remove_objects(&state.images, &objects).await;
            return Err(Error::Unavailable(e.to_string()));
        }
    }
    let result = state
        .store
        .modify(id, expect, |product| {
            if product.images.len() >= MAX_IMAGES {
                return Err(StoreError::Invalid(format!(
                    "a product has at most {MAX_IMAGES} images; delete one first"
                )));
            }
            product.images.push(image.clone());
            if primary || product.images.len() == 1 {
                set_primary(product, &key);
            }
            Ok(Change::Updated)
        })
        .await;
    match result {
        Ok(product) => Ok(product),
        Err(e) => {
            remove_objects(&state.images, &objects).await;
            Err(e.into())
        }
    }
}

/// The bucket's names for an image and its thumbnail.
fn object_keys(id: ProductId, image: &ImageRef) -> Vec<String> {
    let mut objects = vec![Images::object_key(id, &image.key)];
    if let Some(small) = &image.thumbnail {
        objects.push(Images::object_key(id, &small.key));
    }
    objects
}

/// Removes objects no product names (any more); one that stays is logged, not an error: it is
/// never served (only keys a product names are) and costs only its bytes.
async fn remove_objects(images: &Images, objects: &[String]) {
    for object in objects {
        if let Err(e) = images.delete(object).await {
            tracing::warn!(%object, error = %e, "could not remove an image object no product names");
        }
    }
}

fn no_image() -> StoreError {
    StoreError::NotFound
}

/// The type of an image by its key (`{uuid}.{jpg|png|webp}` as uploads name them, or
/// `{uuid}-thumb.{ext}` for a thumbnail).
fn kind_of(key: &str) -> Option<ImageKind> {
    let (stem, extension) = key.split_once('.')?;
    let stem = stem.strip_suffix("-thumb").unwrap_or(stem);
    if stem.len() != 36 {
        return None;
    }
    Uuid::try_parse(stem).ok()?;
    [ImageKind::Jpeg, ImageKind::Png, ImageKind::Webp]
        .into_iter()
        .find(|kind| kind.extension() == extension)
}

/// How long browsers and caches keep an image: for good, as a key names one image forever.
const IMAGE_CACHE: &str = "public, max-age=31536000, immutable";

/// `GET /api/products/{id}/images/{key}`: the stored image (public, like the catalog).
pub async fn serve(
    State(state): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let id = product_id(&id)?;
    let not_found = || Error::NotFound("no such image".into());
    let kind = kind_of(&key).ok_or_else(not_found)?;
    // Only an image the product names: not an object left behind by a failed delete or upload.
    let named = state.store.get(id).await?.is_some_and(|product| {
        product.images.iter().any(|image| {
            image.key == key
                || image
                    .thumbnail
                    .as_ref()
                    .is_some_and(|small| small.key == key)
        })
    });
    if !named {
        return Err(not_found());
    }
    let etag = format!("\"{key}\"");
    let cached = [
        (header::CACHE_CONTROL, HeaderValue::from_static(IMAGE_CACHE)),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).map_err(Error::internal)?,
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cached).into_response());
    }
    let bytes = state
        .images
        .get(&Images::object_key(id, &key))
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?
        .ok_or_else(not_found)?;
    Ok((
        cached,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(kind.content_type()),
        )],
        bytes,
    )
        .into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let id = product_id(&id)?;
    let expect = if_match(&headers, false)?;
    // What the removed image left in the bucket (the edit may run again on a conflict).
    let objects = std::sync::Mutex::new(Vec::new());
    let product = state
        .store
        .modify(id, expect, |product| {
            let at = product
                .images
                .iter()
                .position(|i| i.key == key)
                .ok_or_else(no_image)?;
            let removed = product.images.remove(at);
            *objects.lock().unwrap_or_else(|e| e.into_inner()) = object_keys(id, &removed);
            if removed.primary
                && let Some(first) = product.images.first_mut()
            {
                first.primary = true;
            }
            Ok(Change::Updated)
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => Error::NotFound("no such product or image".into()),
            other => other.into(),
        })?;
    let objects = objects.into_inner().unwrap_or_else(|e| e.into_inner());
    remove_objects(&state.images, &objects).await;
    state.cache.invalidate(id);
    let rendered = render(&product)?;
    Ok(json(StatusCode::OK, rendered.body, Some(&rendered.etag)))
}

pub async fn make_primary(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let id = product_id(&id)?;
    let expect = if_match(&headers, false)?;
    let product = state
        .store
        .modify(id, expect, |product| {
            if !product.images.iter().any(|i| i.key == key) {
                return Err(no_image());
            }
            set_primary(product, &key);
            Ok(Change::Updated)
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => Error::NotFound("no such product or image".into()),
            other => other.into(),
        })?;
    state.cache.invalidate(id);
    let rendered = render(&product)?;
    Ok(json(StatusCode::OK, rendered.body, Some(&rendered.etag)))
}
