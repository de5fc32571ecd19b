//! The products service: the catalog, product images in object storage, and the stock the
//! checkout saga reserves (docs/architecture.md §3, §5, §6). See `docs/services/products.md`.
//!
//! Reads are public and served through a short read cache; writes are for admins and guarded by
//! the product's version (`ETag` / `If-Match`). Every change is published through the outbox:
//! `product.created`, `product.updated`, `product.deleted`, `stock.changed`. The inventory consumer
//! answers `order.created` with `inventory.reserved` or `inventory.rejected`, releases stock on
//! `order.cancelled` and sells it on `order.completed`.

pub mod analytics;
pub mod app;
pub mod cache;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
mod http;
pub use http::openapi;
pub mod s3;
pub mod store;

use std::sync::Arc;

use axum::Router;
use storefront_events::Topic;
use storefront_kit::{
    auth::Authenticator,
    kafka::ConsumerRunner,
    mongo::Mongo,
    outbox::{Outbox, Relay},
    server::{self, Shared},
};

pub use config::Config;
pub use storefront_kit::server::StartError;

use crate::{
    analytics::Analytics, cache::Cache, domain::ImageRules, events::Inventory, s3::Images,
    store::Store,
};

pub const SERVICE: &str = "products";

/// What handlers are given: the token verifier and [`Inner`].
pub type AppState = Shared<Inner>;

pub struct Inner {
    pub store: Store,
    pub analytics: Analytics,
    pub images: Images,
    pub cache: Cache,
    pub rules: ImageRules,
}

/// A ready-to-serve products service: the app, the outbox relay and the inventory consumer.
pub struct Products {
    pub app: Router,
    pub state: AppState,
    pub relay: Relay,
    pub consumer: Option<ConsumerRunner<Inventory>>,
}

impl From<s3::S3Error> for StartError {
    fn from(e: s3::S3Error) -> Self {
        StartError::other("object store", e)
    }
}

/// Connects everything, trusting auth's JWKS at `config.common.jwks_url`.
pub async fn build(config: &Config) -> Result<Products, StartError> {
    build_with(config, config.common.authenticator().await?).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Products, StartError> {
    let topics = [
        Topic::Products,
        Topic::Orders,
        Topic::Payments,
        Topic::ProductViews,
    ];
    let mut service = config.common.start(SERVICE, &topics, authenticator).await?;
    let images = Images::new(&config.s3)?;
    if config.s3.ensure_bucket {
        images.ensure_bucket().await?;
    }
    let (outbox, relay) = service.outbox()?;
    let store = Store::new(service.mongo.clone(), outbox.clone());
    store.ensure_indexes().await?;
    let analytics = Analytics::new(service.mongo.clone(), outbox);
    analytics.ensure_indexes().await?;
    let consumer = service
        .consumer(
            config.consume_events,
            events::settings(service.prefix()),
            || Inventory {
                store: store.clone(),
                analytics: analytics.clone(),
            },
        )
        .await?;
    let state = service.state(Inner {
        store,
        analytics,
        images: images.clone(),
        cache: Cache::new(config.cache_ttl),
        rules: config.images,
    });
    service.ready_when("s3", move || {
        let images = images.clone();
        async move { images.ping().await }
    });
    let app = service.app_consuming(http::routes(state.clone()), consumer.as_ref());
    Ok(Products {
        app,
        state,
        relay,
        consumer,
    })
}

/// Seeds the demo catalog into an empty database (`products seed-demo`); the running service's
/// outbox relay publishes its events. Returns how many products it created (0 if any existed).
pub async fn seed_demo(config: &Config) -> Result<usize, StartError> {
    let mongo = Mongo::connect(&config.common.mongo, SERVICE).await?;
    let images = Images::new(&config.s3)?;
    if config.s3.ensure_bucket {
        images.ensure_bucket().await?;
    }
    let store = Store::new(
        mongo.clone(),
        Outbox::new(&mongo.db, &config.common.kafka.topic_prefix),
    );
    store.ensure_indexes().await?;
    demo::seed(&store, &images)
        .await
        .map_err(|e| StartError::other("writing products", e))
}

/// Publishes every product's current snapshot (`products resync`): the running service's relay
/// sends them. Returns how many.
pub async fn resync(config: &Config) -> Result<usize, StartError> {
    let mongo = Mongo::connect(&config.common.mongo, SERVICE).await?;
    let store = Store::new(
        mongo.clone(),
        Outbox::new(&mongo.db, &config.common.kafka.topic_prefix),
    );
    store
        .resync()
        .await
        .map_err(|e| StartError::other("writing products", e))
}

/// Runs products until SIGTERM/Ctrl-C: HTTP, the outbox relay, the inventory consumer and the
/// flush of product views; then drains them all (the views' last batch before the relay stops).
pub async fn run(config: Config) -> Result<(), StartError> {
    let Products {
        app,
        state,
        relay,
        consumer,
    } = build(&config).await?;
    // The view counter flushes `product.viewed` events when it stops: the relay, stopped after
    // it, still sends them.
    let views = state.analytics.clone();
    let background = server::Background::new()
        .with(move |stop| views.run(config.views_flush, stop))
        .then()
        .with(|stop| relay.run(stop))
        .with_some(consumer, |c, stop| c.run(stop));
    Ok(server::run(&config.common.http, app, background).await?)
}
