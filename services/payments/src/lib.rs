//! The payments service: pays an order through Stripe exactly once (docs/saga.md),
//! once orders has held it for payment, and records each outcome once — from the confirmation or
//! from Stripe's signed webhook, whichever comes first. Money is kept or given back as orders
//! decides: a refund orders asks for is retried until Stripe confirms it (docs/saga.md). See
//! `docs/services/orders.md`.

pub mod config;
pub mod events;
pub mod gateway;
mod http;
pub mod orders;
pub mod refunds;
pub mod store;

use std::{ops::Deref, sync::Arc};

use axum::{Router, extract::FromRef};
use storefront_events::Topic;
use storefront_kit::{
    ExposeSecret, SecretString,
    auth::{Authenticator, Revocations},
    kafka::{self, ConsumerRunner},
    mongo::Mongo,
    outbox::{Outbox, Relay},
    server::{self, Readiness},
};

pub use config::Config;
pub use http::openapi;

use crate::{
    events::RefundRequests,
    gateway::Gateway,
    orders::Orders,
    refunds::{Refunds, Wake},
    store::Store,
};

pub const SERVICE: &str = "payments";

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub gateway: Gateway,
    pub orders: Orders,
    pub authenticator: Arc<Authenticator>,
    pub webhook_secret: SecretString,
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
    Gateway(#[from] gateway::GatewayError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct Payments {
    pub app: Router,
    pub state: AppState,
    pub relay: Relay,
    pub consumer: Option<ConsumerRunner<RefundRequests>>,
    /// The refund task: run it beside the service (every replica may).
    pub refunds: Refunds,
}

pub async fn build(config: &Config) -> Result<Payments, StartError> {
    let revocations =
        Revocations::connect(config.redis.url.expose_secret(), &config.kafka.topic_prefix).await?;
    let authenticator = Arc::new(Authenticator::from_jwks(&config.jwks_url, revocations));
    build_with(config, authenticator).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Payments, StartError> {
    let mongo = Mongo::connect(&config.mongo, SERVICE).await?;
    let prefix = &config.kafka.topic_prefix;
    let producer = kafka::producer(&config.kafka)?;
    if config.kafka.ensure_topics {
        let topics = [Topic::Payments, Topic::Orders].map(|t| t.name(prefix));
        kafka::ensure_topics(&config.kafka, &topics).await?;
    }
    let gateway = Gateway::new(
        config.stripe_secret_key.expose_secret(),
        config.stripe_api_base.as_deref(),
    )?;
    let outbox = Outbox::new(&mongo.db, prefix);
    let store = Store::new(mongo.clone(), outbox.clone());
    store.ensure_indexes().await?;
    let relay = outbox
        .relay(&mongo.db, producer.clone())
        .announcing(authenticator.revocations().redis());
    let wake = Wake::default();
    let consumer = if config.consume_events {
        let handler = Arc::new(RefundRequests {
            store: store.clone(),
            wake: wake.clone(),
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
    let refunds = Refunds {
        store: store.clone(),
        gateway: gateway.clone(),
        poll: config.refund_poll,
        wake,
    };
    let state = AppState(Arc::new(Inner {
        store,
        gateway,
        orders: Orders::new(&config.orders_url, config.order_wait),
        authenticator: authenticator.clone(),
        webhook_secret: config.stripe_webhook_secret.clone(),
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
    Ok(Payments {
        app,
        state,
        relay,
        consumer,
        refunds,
    })
}

/// Runs payments until SIGTERM/Ctrl-C (HTTP, the outbox relay, the consumer, the refund task),
/// then drains.
pub async fn run(config: Config) -> Result<(), StartError> {
    let Payments {
        app,
        relay,
        consumer,
        refunds,
        ..
    } = build(&config).await?;
    let background = server::Background::new()
        .with(|stop| relay.run(stop))
        .with(|stop| refunds.run(stop))
        .with_some(consumer, |c, stop| c.run(stop));
    Ok(server::run(&config.http, app, background).await?)
}
