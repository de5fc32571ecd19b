//! The products service: the catalog, product images in object storage, and the stock the
//! checkout saga reserves (docs/architecture.md §3, §5, §6). See `docs/services/products.md`.
//!
//! Reads are public and served through a short read cache; writes are for admins and guarded by
//! the product's version (`ETag` / `If-Match`). Every change is published through the outbox:
//! `product.created`, `product.updated`, `product.deleted`, `stock.changed`. The inventory consumer
//! answers `order.created` with `inventory.reserved` or `inventory.rejected`, releases stock on
//! `order.cancelled` and sells it on `order.completed`.

pub mod analytics;
pub mod cache;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
mod http;
pub use http::openapi;
pub mod s3;
pub mod store;

use std::{ops::Deref, sync::Arc};

use axum::{Router, extract::FromRef};
use storefront_events::Topic;
use storefront_kit::{
    ExposeSecret,
    auth::{Authenticator, Revocations},
    kafka::{self, ConsumerRunner},
    mongo::Mongo,
    outbox::{Outbox, Relay},
    server::{self, Readiness},
};

pub use config::Config;

use crate::{
    analytics::Analytics, cache::Cache, domain::ImageRules, events::Inventory, s3::Images,
    store::Store,
};

pub const SERVICE: &str = "products";

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub analytics: Analytics,
    pub images: Images,
    pub authenticator: Arc<Authenticator>,
    pub cache: Cache,
    pub rules: ImageRules,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.authenticator.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    S3(#[from] s3::S3Error),
    #[error("writing products: {0}")]
    Seed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A ready-to-serve products service: the app, the outbox relay and the inventory consumer.
pub struct Products {
    pub app: Router,
    pub state: AppState,
    pub relay: Relay,
    pub consumer: Option<ConsumerRunner<Inventory>>,
}

/// Connects everything, trusting auth's JWKS at `config.jwks_url`.
pub async fn build(config: &Config) -> Result<Products, StartError> {
    let revocations =
        Revocations::connect(config.redis.url.expose_secret(), &config.kafka.topic_prefix).await?;
    let authenticator = Arc::new(Authenticator::from_jwks(&config.jwks_url, revocations));
    build_with(config, authenticator).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Products, StartError> {
    let mongo = Mongo::connect(&config.mongo, SERVICE).await?;
    let prefix = &config.kafka.topic_prefix;
    let producer = kafka::producer(&config.kafka)?;
    if config.kafka.ensure_topics {
        kafka::ensure_topics(
            &config.kafka,
            &[
                Topic::Products.name(prefix),
                Topic::Orders.name(prefix),
                Topic::Payments.name(prefix),
                Topic::ProductViews.name(prefix),
            ],
        )
        .await?;
    }
    let images = Images::new(&config.s3)?;
    if config.s3.ensure_bucket {
        images.ensure_bucket().await?;
    }
    let outbox = Outbox::new(&mongo.db, prefix);
    let store = Store::new(mongo.clone(), outbox.clone());
    store.ensure_indexes().await?;
    let analytics = Analytics::new(mongo.clone(), outbox.clone());
    analytics.ensure_indexes().await?;
    let relay = outbox
        .relay(&mongo.db, producer.clone())
        .announcing(authenticator.revocations().redis());
    let consumer = if config.consume_events {
        let handler = Arc::new(Inventory {
            store: store.clone(),
            analytics: analytics.clone(),
        });
        Some(
            ConsumerRunner::new(
                &config.kafka,
                events::settings(prefix),
                mongo.clone(),
                handler,
            )
            .await?
            .woken_by(config.redis.url.expose_secret())?,
        )
    } else {
        None
    };

    let state = AppState(Arc::new(Inner {
        store,
        analytics,
        images: images.clone(),
        authenticator: authenticator.clone(),
        cache: Cache::new(config.cache_ttl),
        rules: config.images,
    }));
    let revocations = authenticator.revocations().clone();
    let readiness = Readiness::new()
        .mongo(&mongo)
        .redis(&revocations)
        .kafka(&producer)
        .check("s3", move || {
            let images = images.clone();
            async move { images.ping().await }
        });
    let app = server::build(
        SERVICE,
        storefront_kit::deadletters::mount(
            http::routes(state.clone()),
            SERVICE,
            consumer.as_ref(),
            &state.authenticator,
        ),
        readiness,
        &config.http,
    );
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
    let mongo = Mongo::connect(&config.mongo, SERVICE).await?;
    let images = Images::new(&config.s3)?;
    if config.s3.ensure_bucket {
        images.ensure_bucket().await?;
    }
    let store = Store::new(
        mongo.clone(),
        Outbox::new(&mongo.db, &config.kafka.topic_prefix),
    );
    store.ensure_indexes().await?;
    demo::seed(&store, &images).await.map_err(|e| match e {
        demo::SeedError::Store(e) => StartError::Seed(e.to_string()),
        demo::SeedError::Image(e) => StartError::Seed(e),
        demo::SeedError::S3(e) => StartError::S3(e),
    })
}

/// Publishes every product's current snapshot (`products resync`): the running service's relay
/// sends them. Returns how many.
pub async fn resync(config: &Config) -> Result<usize, StartError> {
    let mongo = Mongo::connect(&config.mongo, SERVICE).await?;
    let store = Store::new(
        mongo.clone(),
        Outbox::new(&mongo.db, &config.kafka.topic_prefix),
    );
    store
        .resync()
        .await
        .map_err(|e| StartError::Seed(e.to_string()))
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
    Ok(server::run(&config.http, app, background).await?)
}
