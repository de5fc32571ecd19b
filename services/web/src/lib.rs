//! The web service: the customer shop at `/` and the admin at `/admin`, rendered on the server
//! (askama templates checked at compile time) from the other services' APIs, called with the
//! visitor's own token. Works without JavaScript except the live parts (notifications, order
//! status) and the card field, which is Stripe.js so card numbers never reach Storefront.

pub mod account;
pub mod admin;
pub mod api;
pub mod config;
pub mod dashboard;
pub mod pages;
pub mod session;
pub mod shop;

use std::sync::{Arc, LazyLock};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use storefront_kit::{
    ExposeSecret,
    auth::Authenticator,
    server::{self, Readiness, Shared},
};
use tower_http::{compression::CompressionLayer, set_header::SetResponseHeaderLayer};

pub use config::Config;
pub use storefront_kit::server::StartError;

use crate::api::Api;

pub const SERVICE: &str = "web";
// The largest upload body web reads (products has its own, lower limit for the image itself).
use storefront_kit::config::MAX_UPLOAD_BYTES;

/// What handlers are given: the token verifier and [`Inner`].
pub type AppState = Shared<Inner>;

pub struct Inner {
    pub api: Api,
    pub config: Config,
}

const CSS: &str = include_str!("../static/app.css");
const APP_JS: &str = include_str!("../static/app.js");
const PAY_JS: &str = include_str!("../static/pay.js");
const FAVICON: &str = include_str!("../static/favicon.svg");

/// A static file compiled into web, with its weak `ETag` (a hash of its bytes, made once): the
/// gateway's client may get it gzipped.
struct Asset {
    content_type: &'static str,
    body: &'static str,
    etag: String,
}

impl Asset {
    fn new(content_type: &'static str, body: &'static str) -> Asset {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(body, &mut hasher);
        Asset {
            content_type,
            body,
            etag: format!("W/\"{:016x}\"", std::hash::Hasher::finish(&hasher)),
        }
    }

    /// The file, cached for five minutes and then asked again with its `ETag` (a 304 while it
    /// is unchanged).
    fn serve(&self, request: &HeaderMap) -> Response {
        let cached = [
            (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
            (header::ETAG, self.etag.clone()),
        ];
        let unchanged = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .map(|t| t.trim().trim_start_matches("W/"))
                    .any(|t| t == self.etag.trim_start_matches("W/") || t == "*")
            });
        if unchanged {
            return (StatusCode::NOT_MODIFIED, cached).into_response();
        }
        (
            cached,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response()
    }
}

static CSS_ASSET: LazyLock<Asset> = LazyLock::new(|| Asset::new("text/css; charset=utf-8", CSS));
static APP_JS_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("text/javascript; charset=utf-8", APP_JS));
static PAY_JS_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("text/javascript; charset=utf-8", PAY_JS));
static FAVICON_ASSET: LazyLock<Asset> = LazyLock::new(|| Asset::new("image/svg+xml", FAVICON));

fn routes(state: AppState) -> Router {
    let csp = format!(
        "default-src 'self'; script-src 'self' {stripe}; connect-src 'self' {stripe}; \
         frame-src {stripe}; img-src 'self' data:; style-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        stripe = state.config.stripe_origin()
    );
    Router::new()
        .route("/", get(shop::catalog))
        .route("/products/{id}", get(shop::product))
        .route("/signin", get(shop::signin_form).post(shop::signin))
        .route("/signup", get(shop::signup_form).post(shop::signup))
        .route("/signout", post(shop::signout))
        .route("/cart", get(shop::cart))
        .route("/cart/items", post(shop::add_to_cart))
        .route("/cart/items/{product}", post(shop::set_quantity))
        .route("/cart/items/{product}/remove", post(shop::remove_from_cart))
        .route("/cart/checkout", post(shop::checkout))
        .route("/orders", get(shop::orders))
        .route("/orders/{id}", get(shop::order))
        .route("/orders/{id}/pay", post(shop::pay))
        .route("/orders/{id}/cancel", post(shop::cancel))
        .route("/account", get(account::show).post(account::update))
        .route("/notifications", get(shop::notifications))
        .route("/notifications/read", post(shop::read_all))
        .route("/admin", get(dashboard::show))
        .route(
            "/admin/products",
            get(admin::products).post(admin::create_product),
        )
        .route("/admin/products/new", get(admin::new_product))
        .route(
            "/admin/products/{id}",
            get(admin::edit_product).post(admin::update_product),
        )
        .route("/admin/products/{id}/stock", post(admin::adjust_stock))
        .route("/admin/products/{id}/delete", post(admin::delete_product))
        .route(
            "/admin/products/{id}/images/{key}/{action}",
            post(admin::change_image),
        )
        .route(
            "/admin/products/{id}/images",
            post(admin::upload_image)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
                .layer(axum::middleware::from_fn_with_state(
                    MAX_UPLOAD_BYTES,
                    storefront_kit::server::read_body_first,
                )),
        )
        .route("/admin/orders", get(admin::orders))
        .route("/admin/orders/{id}", get(admin::order))
        .route("/admin/users", get(admin::users))
        .route("/admin/dead-letters", get(admin::dead_letters))
        .route(
            "/admin/dead-letters/{service}/{id}/{action}",
            post(admin::handle_dead_letter),
        )
        .route("/admin/users/{id}/{action}", post(admin::block))
        // The kit's fallback answers problem+json (for APIs); people get a page.
        .route("/{*path}", get(not_found))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::middleware,
        ))
        .route(
            "/static/app.css",
            get(|h: HeaderMap| async move { CSS_ASSET.serve(&h) }),
        )
        .route(
            "/static/app.js",
            get(|h: HeaderMap| async move { APP_JS_ASSET.serve(&h) }),
        )
        .route(
            "/static/pay.js",
            get(|h: HeaderMap| async move { PAY_JS_ASSET.serve(&h) }),
        )
        .route(
            "/static/favicon.svg",
            get(|h: HeaderMap| async move { FAVICON_ASSET.serve(&h) }),
        )
        // Where browsers look when a page names no icon (feeds, old bookmarks).
        .route(
            "/favicon.ico",
            get(|h: HeaderMap| async move { FAVICON_ASSET.serve(&h) }),
        )
        // Not the services' `no-referrer`: under it browsers send `Origin: null` with every form
        // POST, and the origin check above could not tell this site's forms from another's.
        // `same-origin` still sends nothing to other sites.
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("default-src 'self'")),
        ))
        // Pages, CSS and scripts gzipped for a client that asks (a catalog page: 6.2 → 1.6 KB). Here
        // rather than at the gateway, so it holds behind any Ingress controller.
        .layer(CompressionLayer::new())
        .with_state(state)
}

async fn not_found() -> Response {
    pages::status_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing here. It may have been removed.",
    )
}

pub async fn build(config: Config) -> Result<Router, StartError> {
    let authenticator = Authenticator::connect(
        &config.jwks_url,
        config.redis.url.expose_secret(),
        &config.namespace,
    )
    .await?;
    Ok(build_with(config, authenticator))
}

pub fn build_with(config: Config, authenticator: Arc<Authenticator>) -> Router {
    let revocations = authenticator.revocations().clone();
    let http = config.http.clone();
    let state = Shared::new(
        authenticator,
        Inner {
            api: Api::new(config.urls.clone()),
            config,
        },
    );
    let readiness = Readiness::new().redis(&revocations);
    server::build(SERVICE, routes(state), readiness, &http)
}

/// Runs web until SIGTERM/Ctrl-C.
pub async fn run(config: Config) -> Result<(), StartError> {
    let http = config.http.clone();
    let app = build(config).await?;
    Ok(server::run(&http, app, server::Background::new()).await?)
}
