//! The orders service: orders and their state machine (docs/architecture.md §6), priced from
//! orders' own product replica, moved by inventory's and payments' events, and expired by a task
//! that survives restarts. It is the one owner of an order's fate: payments holds an order here
//! before it charges, and money that arrives for an order that ended unpaid becomes a refund due
//! (docs/saga.md). See `docs/services/orders.md` and `docs/api/orders.md`.

pub mod changes;
pub mod config;
pub mod domain;
pub mod events;
pub mod expiry;
mod http;
pub mod pricing;
pub mod stats;
pub mod store;

use std::{ops::Deref, sync::Arc, time::Duration};

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
pub use http::openapi;

use crate::{changes::Changes, events::Saga, expiry::Expiry, pricing::Pricing, store::Store};

pub const SERVICE: &str = "orders";

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub authenticator: Arc<Authenticator>,
    pub payment_window: Duration,
    pub payment_hold: Duration,
    pub pricing: Pricing,
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
    Io(#[from] std::io::Error),
}

/// A ready-to-serve orders service and the tasks to run beside it.
pub struct Orders {
    pub app: Router,
    pub state: AppState,
    pub relay: Relay,
    pub consumer: Option<ConsumerRunner<Saga>>,
    pub expiry: Expiry,
}

pub async fn build(config: &Config) -> Result<Orders, StartError> {
    let revocations =
        Revocations::connect(config.redis.url.expose_secret(), &config.kafka.topic_prefix).await?;
    let authenticator = Arc::new(Authenticator::from_jwks(&config.jwks_url, revocations));
    build_with(config, authenticator).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Orders, StartError> {
    let mongo = Mongo::connect(&config.mongo, SERVICE).await?;
    let prefix = &config.kafka.topic_prefix;
    let producer = kafka::producer(&config.kafka)?;
    if config.kafka.ensure_topics {
        let topics = [Topic::Orders, Topic::Products, Topic::Payments].map(|t| t.name(prefix));
        kafka::ensure_topics(&config.kafka, &topics).await?;
    }
    let outbox = Outbox::new(&mongo.db, prefix);
    let store = Store::new(
        mongo.clone(),
        outbox.clone(),
        Changes::new(config.wait_recheck),
    );
    store.ensure_indexes().await?;
    let relay = outbox
        .relay(&mongo.db, producer.clone())
        .announcing(authenticator.revocations().redis());
    let consumer = if config.consume_events {
        let saga = Arc::new(Saga::new(store.clone()));
        Some(
            ConsumerRunner::new(&config.kafka, events::settings(prefix), mongo.clone(), saga)
                .await?
                .woken_by(config.redis.url.expose_secret())?,
        )
    } else {
        None
    };
    let expiry = Expiry {
        store: store.clone(),
        poll: config.expiry_poll,
    };
    let pricing_url = match &config.pricing_url {
        Some(url) => url.clone(),
        None => pricing::serve_builtin().await?,
    };
    let state = AppState(Arc::new(Inner {
        pricing: Pricing::new(pricing_url, config.pricing_timeout),
        store,
        authenticator: authenticator.clone(),
        payment_window: config.payment_window,
        payment_hold: config.payment_hold,
    }));
    let revocations = authenticator.revocations().clone();
    let readiness = Readiness::new()
        .mongo(&mongo)
        .redis(&revocations)
        .kafka(&producer);
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
    Ok(Orders {
        app,
        state,
        relay,
        consumer,
        expiry,
    })
}

/// Runs orders until SIGTERM/Ctrl-C: HTTP, the outbox relay, the consumer and the expiry task;
/// then drains them.
pub async fn run(config: Config) -> Result<(), StartError> {
    let Orders {
        app,
        relay,
        consumer,
        expiry,
        ..
    } = build(&config).await?;
    let background = server::Background::new()
        .with(|stop| relay.run(stop))
        .with(|stop| expiry.run(stop))
        .with_some(consumer, |c, stop| c.run(stop));
    Ok(server::run(&config.http, app, background).await?)
}
