//! The notifications service: turns order, payment and product events into each user's
//! notifications (docs/architecture.md §7), keeps them in its database, and pushes them over
//! WebSocket to the user's open sockets, whichever replica holds them (Redis pub/sub). See
//! `docs/api/notifications.md`.

pub mod config;
pub mod events;
mod http;
pub use http::openapi;
pub mod hub;
pub mod store;

use std::{ops::Deref, sync::Arc};

use axum::{Router, extract::FromRef};
use storefront_kit::{
    ExposeSecret,
    auth::{Authenticator, Revocations},
    kafka::{self, ConsumerRunner},
    mongo::Mongo,
    server::{self, Readiness},
};
use tokio::sync::{mpsc, watch};

pub use config::{Config, SocketConfig};

use crate::{events::Notifier, hub::Hub, store::Store};

pub const SERVICE: &str = "notifications";

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub authenticator: Arc<Authenticator>,
    pub hub: Arc<Hub>,
    pub sockets: SocketConfig,
    /// Origins allowed to open a socket with the cookie (besides the service's own host).
    pub allowed_origins: Vec<String>,
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

/// The Redis side of fan-out: the subscriber that delivers to this replica's sockets, and the
/// publisher of what this replica's consumer committed.
pub struct Fanout {
    hub: Arc<Hub>,
    client: redis::Client,
    committed: mpsc::UnboundedReceiver<Vec<store::NotificationDoc>>,
}

impl Fanout {
    /// Runs until `stop` turns true.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let publisher = tokio::spawn(events::publish(self.hub.clone(), self.committed));
        self.hub.subscribe(self.client, stop).await;
        publisher.abort();
    }
}

pub struct Notifications {
    pub app: Router,
    pub state: AppState,
    pub consumer: Option<ConsumerRunner<Notifier>>,
    pub fanout: Fanout,
}

pub async fn build(config: &Config) -> Result<Notifications, StartError> {
    let revocations =
        Revocations::connect(config.redis.url.expose_secret(), &config.kafka.topic_prefix).await?;
    let authenticator = Arc::new(Authenticator::from_jwks(&config.jwks_url, revocations));
    build_with(config, authenticator).await
}

/// [`build`] with the token verifier given (tests pass one holding their own keys).
pub async fn build_with(
    config: &Config,
    authenticator: Arc<Authenticator>,
) -> Result<Notifications, StartError> {
    let mongo = Mongo::connect(&config.mongo, SERVICE).await?;
    let prefix = &config.kafka.topic_prefix;
    if config.kafka.ensure_topics {
        // The topics it consumes (the owners create them too; whoever starts first does).
        let topics = events::settings(prefix).topics;
        kafka::ensure_topics(&config.kafka, &topics).await?;
    }
    let store = Store::new(&mongo.db);
    if let Err(e) = store.ensure_indexes().await {
        tracing::warn!(error = %e, "cannot create indexes yet; lists are slower until a restart");
    }
    let revocations = authenticator.revocations().clone();
    let hub = Hub::new(
        revocations.redis(),
        prefix,
        config.sockets.send_buffer,
        config.sockets.max_per_user,
        config.sockets.max_product_sockets,
    );
    let (published, committed) = mpsc::unbounded_channel();
    let consumer = if config.consume_events {
        let handler = Arc::new(Notifier::new(store.clone(), published, hub.clone()));
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
        authenticator,
        hub: hub.clone(),
        sockets: config.sockets.clone(),
        allowed_origins: config.http.cors_allowed_origins.clone(),
    }));
    let fanout_hub = hub.clone();
    let readiness = Readiness::new()
        .mongo(&mongo)
        .redis(&revocations)
        .check("fanout", move || {
            let subscribed = fanout_hub.subscribed();
            async move {
                if subscribed {
                    Ok(())
                } else {
                    Err("not subscribed to the Redis fan-out channel".to_owned())
                }
            }
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
    Ok(Notifications {
        app,
        state,
        consumer,
        fanout: Fanout {
            hub,
            client: redis::Client::open(config.redis.url.expose_secret())?,
            committed,
        },
    })
}

/// Runs notifications until SIGTERM/Ctrl-C.
pub async fn run(config: Config) -> Result<(), StartError> {
    let Notifications {
        app,
        consumer,
        fanout,
        ..
    } = build(&config).await?;
    let background = server::Background::new()
        .with_some(consumer, |c, stop| c.run(stop))
        .with(|stop| fanout.run(stop));
    Ok(server::run(&config.http, app, background).await?)
}
