//! The products API under `/api/products`. Reads are public; writes are for admins and name the
//! version they change (`If-Match`). Errors are `storefront_kit::Error`, rendered as problem+json.

mod images;
mod products;
mod stats;
mod stock;
mod views;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use serde_json::{Value, json};
use storefront_kit::openapi::Api;

use crate::AppState;

/// Where the document is served: a static segment, so it wins over `/api/products/{id}`.
const OPENAPI_PATH: &str = "/api/products/openapi.json";

pub fn routes(state: AppState) -> Router {
    // A multipart upload carries the image plus a little framing; the route reads at least what
    // the gateway lets through, so a larger image is this service's 413, not a closed connection.
    let upload_limit =
        (state.rules.max_bytes + 64 * 1024).max(storefront_kit::config::MAX_UPLOAD_BYTES);
    Router::new()
        .route("/api/products", get(products::list).post(products::create))
        .route("/api/products/categories", get(products::categories))
        .route("/api/products/admin/stats", get(stats::show))
        .route(
            "/api/products/{id}",
            get(products::show)
                .put(products::replace)
                .patch(products::update)
                .delete(products::delete),
        )
        .route(
            "/api/products/{id}/stock",
            get(stock::show).post(stock::change),
        )
        .route(
            "/api/products/{id}/images",
            post(images::upload)
                .layer(DefaultBodyLimit::max(upload_limit))
                .layer(axum::middleware::from_fn_with_state(
                    upload_limit,
                    storefront_kit::server::read_body_first,
                )),
        )
        .route(
            "/api/products/{id}/images/{key}",
            get(images::serve).delete(images::delete),
        )
        .route(
            "/api/products/{id}/images/{key}/primary",
            post(images::make_primary),
        )
        .merge(storefront_kit::openapi::route(OPENAPI_PATH, openapi))
        .with_state(state)
}

const PRODUCT_ID: &str = "The product's id (a UUID); anything else names no product (404)";
const IMAGE_KEY: &str = "The image's `key` (`{uuid}.{jpg|png}`, as the product lists it)";
const IF_MATCH_REQUIRED: &str = "The product's `ETag` as last read (`\"v3\"`), or `*` for whatever is current. Without it: 428; another entity tag (a weak one included): 412; not an entity tag at all: 400. Checked once the request is otherwise valid";
const IF_MATCH_OPTIONAL: &str = "Optional: the product's `ETag` as last read (`\"v3\"`), or `*`; when sent, another entity tag is a 412, and not an entity tag at all a 400. Checked once the request is otherwise valid";
const MALFORMED_IF_MATCH: &str =
    "`If-Match` is neither `*` nor an entity tag (`malformed-request`).";
const NO_PRODUCT: &str = "No such product: an unknown, deleted or malformed id (`not-found`).";
const STALE: &str = "`If-Match` names another version than the current one, or is not an ETag of ours (`version-mismatch`): reload and apply the change again.";
const IF_MATCH_MISSING: &str = "No `If-Match` (`if-match-required`).";
const WRITTEN: &str = "The product after the change, with its new `ETag`";

/// The products service's OpenAPI document: the operations above, in their order.
pub fn openapi() -> Value {
    let mut api = Api::new(
        "Storefront products",
        "The catalog, product images and stock (docs/api/products.md). Reads are public; writes \
         are for admins and name the version they change with `If-Match`.",
    );
    api.operation("GET", "/api/products", "listProducts", "Search the catalog", |op| {
        op.access(storefront_kit::openapi::Access::Public)
            .describe(
                "A page of the live products (deleted ones never appear), filtered and ordered. \
                 Answers may come from a short read cache.",
            )
            .query::<products::ListParams>()
            .ok::<products::ProductList>(200, "The page")
            .problem(
                400,
                "An unknown or repeated query parameter, or a price bound or `in_stock` that is \
                 not a number or a boolean (`malformed-request`).",
            )
            .problem(
                422,
                "A bad page, page size, price bound or order, or a search that is too long \
                 (`validation`).",
            );
    })
    .operation(
        "POST",
        "/api/products",
        "createProduct",
        "Create a product",
        |op| {
            op.admin()
                .describe(
                    "Creates a product at version 1 with its initial stock (written to the stock \
                     ledger as \"initial stock\"), and publishes `product.created`. The answer has \
                     the product's `ETag` and its `Location`.",
                )
                .json::<products::CreateBody>()
                .ok::<views::ProductView>(201, "The new product, with `ETag` and `Location`");
        },
    )
    .operation(
        "GET",
        "/api/products/categories",
        "listProductCategories",
        "The catalog's categories",
        |op| {
            op.access(storefront_kit::openapi::Access::Public)
                .describe(
                    "Every category live products are in, with how many, by name: what the \
                     shop's category filter offers.",
                )
                .ok::<products::CategoryList>(200, "The categories");
        },
    )
    .operation(
        "GET",
        "/api/products/admin/stats",
        "productStats",
        "Views of the catalog",
        |op| {
            op.admin()
                .describe(
                    "How often customers looked at products, per day (UTC) over the last `days` \
                     days, and the ten most viewed: counted from `product.viewed`, which \
                     products publishes every `VIEWS_FLUSH_MS` (so the last few seconds are not \
                     in yet).",
                )
                .query::<storefront_kit::validate::DaysQuery>()
                .ok::<stats::Stats>(200, "The views")
                .problem(
                    400,
                    "A parameter other than `days` (`malformed-request`).",
                )
                .problem(
                    422,
                    "`days` is not a whole number from 1 to 90 (`validation`).",
                );
        },
    )
    .operation(
        "GET",
        "/api/products/{id}",
        "showProduct",
        "A product",
        |op| {
            op.access(storefront_kit::openapi::Access::Public)
                .describe(
                    "A read that is not an admin's counts as a view of the product (the \
                     dashboard's figures, the catalog's `popular` order); it is counted in \
                     memory and published in batches, never on the read's path.",
                )
                .id("id", PRODUCT_ID)
                .header(
                    "If-None-Match",
                    false,
                    "ETags the client has (`\"v3\"`, comma-separated): a 304 when one is current",
                )
                .ok::<views::ProductView>(200, "The product, with its `ETag` (`\"v{version}\"`)")
                .empty(304, "The product has not changed since that `ETag`")
                .problem(404, NO_PRODUCT);
        },
    )
    .operation(
        "PUT",
        "/api/products/{id}",
        "replaceProduct",
        "Replace a product's details",
        |op| {
            op.admin()
                .describe(
                    "Every detail replaced, at the version `If-Match` names (no lost updates); \
                     publishes `product.updated`.",
                )
                .id("id", PRODUCT_ID)
                .header("If-Match", true, IF_MATCH_REQUIRED)
                .problem(400, MALFORMED_IF_MATCH)
                .json::<products::ReplaceBody>()
                .ok::<views::ProductView>(200, WRITTEN)
                .problem(404, NO_PRODUCT)
                .problem(412, STALE)
                .problem(428, IF_MATCH_MISSING);
        },
    )
    .operation(
        "PATCH",
        "/api/products/{id}",
        "updateProduct",
        "Change some of a product's details",
        |op| {
            op.admin()
                .describe(
                    "The details given changed (at least one), at the version `If-Match` names; \
                     publishes `product.updated`.",
                )
                .id("id", PRODUCT_ID)
                .header("If-Match", true, IF_MATCH_REQUIRED)
                .problem(400, MALFORMED_IF_MATCH)
                .json::<products::UpdateBody>()
                .ok::<views::ProductView>(200, WRITTEN)
                .problem(
                    400,
                    "None of `title`, `description`, `category`, `price` given (`malformed-request`).",
                )
                .problem(404, NO_PRODUCT)
                .problem(412, STALE)
                .problem(428, IF_MATCH_MISSING);
        },
    )
    .operation(
        "DELETE",
        "/api/products/{id}",
        "deleteProduct",
        "Delete a product",
        |op| {
            op.admin()
                .describe(
                    "Soft delete at the version `If-Match` names: the product leaves the shop and \
                     search, and stays stored for the orders that name it. Publishes \
                     `product.deleted`.",
                )
                .id("id", PRODUCT_ID)
                .header("If-Match", true, IF_MATCH_REQUIRED)
                .problem(400, MALFORMED_IF_MATCH)
                .empty(204, "Deleted")
                .problem(404, NO_PRODUCT)
                .problem(412, STALE)
                .problem(428, IF_MATCH_MISSING);
        },
    )
    .operation(
        "GET",
        "/api/products/{id}/stock",
        "showProductStock",
        "A product's stock and ledger",
        |op| {
            op.admin()
                .id("id", PRODUCT_ID)
                .ok::<stock::StockView>(200, "The stock and its 50 newest movements")
                .problem(404, NO_PRODUCT);
        },
    )
    .operation(
        "POST",
        "/api/products/{id}/stock",
        "changeProductStock",
        "Set or adjust a product's stock",
        |op| {
            op.admin()
                .describe(
                    "Sets the available quantity or moves it by a signed amount, with a reason \
                     kept in the stock ledger; publishes `stock.changed` (`adjusted`). `If-Match` \
                     is optional: an adjustment composes with concurrent ones; send it with `set` \
                     to be sure the quantity you overwrite is the one you saw.",
                )
                .id("id", PRODUCT_ID)
                .header("If-Match", false, IF_MATCH_OPTIONAL)
                .problem(400, MALFORMED_IF_MATCH)
                .json::<stock::ChangeBody>()
                .ok::<views::ProductView>(200, WRITTEN)
                .problem(404, NO_PRODUCT)
                .problem(
                    409,
                    "The change would take stock below zero or above 1,000,000; the detail says \
                     how many are available (`stock-conflict`).",
                )
                .problem(412, STALE)
                .problem(
                    422,
                    "Not exactly one of `set` and `adjust`, a quantity out of range, or a bad \
                     `reason` (`validation`).",
                );
        },
    )
    .operation(
        "POST",
        "/api/products/{id}/images",
        "uploadProductImage",
        "Upload an image",
        |op| {
            op.admin()
                .describe(
                    "`multipart/form-data` with a `file` part and an optional `primary` part. The \
                     type is read from the file's bytes (JPEG, PNG or WebP), never from its name \
                     or part type; it is decoded, scaled to at most 1600 pixels a side and stored \
                     again as a JPEG (a PNG when it has transparency). At most `IMAGE_MAX_BYTES` \
                     (5 MiB by default; the gateway takes bodies up to 10 MiB), each side 32 to \
                     8000 pixels, at most 24 million pixels; at most 12 images a product. The \
                     first image of a product is its primary one. Publishes `product.updated`.",
                )
                .id("id", PRODUCT_ID)
                .header("If-Match", false, IF_MATCH_OPTIONAL)
                .problem(400, MALFORMED_IF_MATCH)
                .body(
                    "multipart/form-data",
                    json!({
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "string",
                                "contentMediaType": "application/octet-stream",
                                "description": "The image: JPEG, PNG or WebP.",
                            },
                            "primary": {
                                "type": "string",
                                "enum": ["true", "false", "1", "0", "on", ""],
                                "description": "Whether it becomes the primary image (default false).",
                            },
                        },
                        "required": ["file"],
                        "additionalProperties": false,
                    }),
                )
                .ok::<views::ProductView>(201, "The product with the new image, and its new `ETag`")
                .problem(
                    400,
                    "A malformed multipart body, a part other than `file` and `primary`, or a \
                     part without a name (`malformed-request`).",
                )
                .problem(404, NO_PRODUCT)
                .problem(
                    409,
                    "The product has 12 images already; delete one first (`stock-conflict`).",
                )
                .problem(412, STALE)
                .problem(
                    413,
                    "The image is larger than `IMAGE_MAX_BYTES`, or the body than the gateway \
                     takes (`payload-too-large`).",
                )
                .problem(
                    415,
                    "Not `multipart/form-data`, or a file that is not a JPEG, PNG or WebP \
                     (`unsupported-media-type`).",
                )
                .problem(
                    422,
                    "No `file` part, a `primary` that is not true or false, or an image out of \
                     the rules (too small or large a side, too many pixels, damaged), on `file` \
                     (`validation`).",
                );
        },
    )
    .operation(
        "GET",
        "/api/products/{id}/images/{key}",
        "showProductImage",
        "An image",
        |op| {
            op.access(storefront_kit::openapi::Access::Public)
                .describe(
                    "The stored image with its type, `X-Content-Type-Options: nosniff`, \
                     `Cache-Control: public, max-age=31536000, immutable` and an `ETag` (a key \
                     names one image for good).",
                )
                .id("id", PRODUCT_ID)
                .path("key", IMAGE_KEY)
                .header(
                    "If-None-Match",
                    false,
                    "The image's `ETag` (or `*`): a 304 when it matches",
                )
                .answer(
                    200,
                    "The image",
                    Some((
                        "image/jpeg",
                        json!({ "type": "string", "contentMediaType": "image/jpeg" }),
                    )),
                )
                .empty(304, "The client has this image")
                .problem(
                    404,
                    "No such product, or the key is not one of its stored images (`not-found`).",
                );
        },
    )
    .operation(
        "DELETE",
        "/api/products/{id}/images/{key}",
        "deleteProductImage",
        "Delete an image",
        |op| {
            op.admin()
                .describe(
                    "Removes the image; if it was the primary one, the first remaining image \
                     becomes primary. Publishes `product.updated`.",
                )
                .id("id", PRODUCT_ID)
                .path("key", IMAGE_KEY)
                .header("If-Match", false, IF_MATCH_OPTIONAL)
                .problem(400, MALFORMED_IF_MATCH)
                .ok::<views::ProductView>(200, WRITTEN)
                .problem(404, "No such product or image (`not-found`).")
                .problem(412, STALE);
        },
    )
    .operation(
        "POST",
        "/api/products/{id}/images/{key}/primary",
        "setPrimaryProductImage",
        "Make an image the primary one",
        |op| {
            op.admin()
                .describe("Publishes `product.updated`.")
                .id("id", PRODUCT_ID)
                .path("key", IMAGE_KEY)
                .header("If-Match", false, IF_MATCH_OPTIONAL)
                .problem(400, MALFORMED_IF_MATCH)
                .ok::<views::ProductView>(200, WRITTEN)
                .problem(404, "No such product or image (`not-found`).")
                .problem(412, STALE);
        },
    );
    storefront_kit::deadletters::document(&mut api, crate::SERVICE);
    let mut document = api.document();
    // The kit's `answer` takes one media type; an image is served as the type it was stored as.
    if let Some(content) = document
        .pointer_mut("/paths/~1api~1products~1{id}~1images~1{key}/get/responses/200/content")
        .and_then(Value::as_object_mut)
    {
        for media_type in ["image/png", "image/webp"] {
            content.insert(
                media_type.into(),
                json!({ "schema": { "type": "string", "contentMediaType": media_type } }),
            );
        }
    }
    add_response_headers(&mut document);
    document
}

/// The headers the kit cannot state: a product answer's `ETag` (what `If-Match` and
/// `If-None-Match` take), a new product's `Location`, an image's caching headers.
fn add_response_headers(document: &mut Value) {
    let etag = json!({
        "description": "The product's version as an entity tag: `\"v{version}\"`",
        "required": true,
        "schema": { "type": "string" },
    });
    let product = json!({ "ETag": etag });
    let created = json!({
        "ETag": etag,
        "Location": {
            "description": "The new product: `/api/products/{id}`",
            "required": true,
            "schema": { "type": "string" },
        },
    });
    let image = json!({
        "ETag": {
            "description": "The image's entity tag: its key, quoted",
            "required": true,
            "schema": { "type": "string" },
        },
        "Cache-Control": {
            "description": "`public, max-age=31536000, immutable`: a key names one image for good",
            "required": true,
            "schema": { "type": "string" },
        },
    });
    let answers = [
        ("/api/products", "post", "201", &created),
        ("/api/products/{id}", "get", "200", &product),
        ("/api/products/{id}", "get", "304", &product),
        ("/api/products/{id}", "put", "200", &product),
        ("/api/products/{id}", "patch", "200", &product),
        ("/api/products/{id}/stock", "post", "200", &product),
        ("/api/products/{id}/images", "post", "201", &product),
        ("/api/products/{id}/images/{key}", "get", "200", &image),
        ("/api/products/{id}/images/{key}", "get", "304", &image),
        ("/api/products/{id}/images/{key}", "delete", "200", &product),
        (
            "/api/products/{id}/images/{key}/primary",
            "post",
            "200",
            &product,
        ),
    ];
    for (path, method, status, headers) in answers {
        let response = &mut document["paths"][path][method]["responses"][status];
        assert!(response.is_object(), "{method} {path} answers no {status}");
        response["headers"] = headers.clone();
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};

    use super::OPENAPI_PATH;

    #[test]
    fn the_openapi_document_is_whole() {
        let document = super::openapi();
        storefront_kit::openapi::assert_whole(&document, 17);
        let image =
            &document["paths"]["/api/products/{id}/images/{key}"]["get"]["responses"]["200"];
        let types: Vec<&String> = image["content"].as_object().unwrap().keys().collect();
        assert_eq!(types, ["image/jpeg", "image/png", "image/webp"]);
    }

    /// `GET /api/products/openapi.json` is the document, not `show` with the id `openapi.json`:
    /// a static segment wins over `{id}` whatever the order the routes are added in.
    #[tokio::test]
    async fn the_document_path_is_not_a_product_id() {
        let app: Router = Router::new()
            .route("/api/products/{id}", get(|| async { "show" }))
            .route(OPENAPI_PATH, get(|| async { "document" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let body = reqwest::get(format!("http://{address}{OPENAPI_PATH}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "document");
    }
}
