//! What every service's `lib.rs` shares besides its own parts: its start ([`Service`]: the
//! database, topics, outbox and relay, consumer, readiness checks and the router around its
//! routes), the state its handlers are given ([`Shared`]), its token verifier
//! ([`ServiceConfig::authenticator`]) and the error its start can end in ([`StartError`]).

use std::{future::Future, ops::Deref, sync::Arc};

use axum::{Router, extract::FromRef};
use secrecy::ExposeSecret;
use storefront_events::Topic;

use super::Readiness;
use crate::{
    auth::Authenticator,
    config::{HttpConfig, KafkaConfig, MongoConfig, RedisConfig, ServiceConfig},
    kafka::{self, ConsumerRunner, ConsumerSettings, EventHandler},
    mongo::Mongo,
    outbox::{Outbox, Relay},
};

/// A service's state as its handlers see it: the token verifier (which the kit's
/// [`CurrentUser`](crate::auth::CurrentUser) and [`RequireAdmin`](crate::auth::RequireAdmin)
/// extractors find through `FromRef`) and the service's own parts `T`, read through `Deref`.
/// Cloned for every request: two `Arc`s.
///
/// A service names it once — `pub type AppState = Shared<Inner>;` — and its handlers take
/// `State<AppState>`.
pub struct Shared<T> {
    pub authenticator: Arc<Authenticator>,
    own: Arc<T>,
}

impl<T> Shared<T> {
    pub fn new(authenticator: Arc<Authenticator>, own: T) -> Self {
        Shared {
            authenticator,
            own: Arc::new(own),
        }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            authenticator: self.authenticator.clone(),
            own: self.own.clone(),
        }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.own
    }
}

impl<T> FromRef<Shared<T>> for Arc<Authenticator> {
    fn from_ref(state: &Shared<T>) -> Self {
        state.authenticator.clone()
    }
}

impl ServiceConfig {
    /// The token verifier these settings name: auth's keys, the shop's revocation list.
    pub async fn authenticator(&self) -> Result<Arc<Authenticator>, redis::RedisError> {
        Authenticator::connect(
            &self.jwks_url,
            self.redis.url.expose_secret(),
            &self.kafka.topic_prefix,
        )
        .await
    }

    /// Starts the service `name` on these settings: see [`Service::start`].
    pub async fn start(
        &self,
        name: &'static str,
        topics: &[Topic],
        authenticator: Arc<Authenticator>,
    ) -> Result<Service, StartError> {
        let backends = Backends {
            http: &self.http,
            mongo: &self.mongo,
            kafka: &self.kafka,
            redis: &self.redis,
        };
        Service::start(name, backends, topics, authenticator).await
    }
}

/// Where a service's backends are: what [`Service::start`] reads.
#[derive(Clone, Copy)]
pub struct Backends<'a> {
    pub http: &'a HttpConfig,
    pub mongo: &'a MongoConfig,
    pub kafka: &'a KafkaConfig,
    pub redis: &'a RedisConfig,
}

/// A service while it starts: its database, its token verifier, and what `/readyz` will check.
/// Every service's `build` is the same steps around its own parts —
///
/// ```text
/// let mut service = config.common.start(SERVICE, &topics, authenticator).await?;
/// let (outbox, relay) = service.outbox()?;             // a service that publishes
/// let store = Store::new(service.mongo.clone(), outbox);
/// let consumer = service.consumer(on, settings, || Handler { store: store.clone() }).await?;
/// let state = service.state(Inner { store, … });
/// let app = service.app_consuming(http::routes(state.clone()), consumer.as_ref());
/// ```
pub struct Service {
    name: &'static str,
    http: HttpConfig,
    kafka: KafkaConfig,
    redis: RedisConfig,
    pub authenticator: Arc<Authenticator>,
    pub mongo: Mongo,
    readiness: Readiness,
}

impl Service {
    /// Connects the service's own database and — when `KAFKA_ENSURE_TOPICS` asks (the
    /// one-machine stack and tests; in a cluster the operator creates them) — the `topics` it
    /// writes or reads. `/readyz` checks the database and Redis (the revocation list).
    pub async fn start(
        name: &'static str,
        backends: Backends<'_>,
        topics: &[Topic],
        authenticator: Arc<Authenticator>,
    ) -> Result<Self, StartError> {
        let mongo = Mongo::connect(backends.mongo, name).await?;
        let kafka = backends.kafka;
        if kafka.ensure_topics {
            let names: Vec<String> = topics.iter().map(|t| t.name(&kafka.topic_prefix)).collect();
            kafka::ensure_topics(kafka, &names).await?;
        }
        let readiness = Readiness::new()
            .mongo(&mongo)
            .redis(authenticator.revocations());
        Ok(Service {
            name,
            http: backends.http.clone(),
            kafka: kafka.clone(),
            redis: backends.redis.clone(),
            authenticator,
            mongo,
            readiness,
        })
    }

    /// The shop's topic prefix (its name).
    pub fn prefix(&self) -> &str {
        &self.kafka.topic_prefix
    }

    /// The outbox the service's events are written to in their transaction, and the relay that
    /// publishes them (announcing new ones in Redis, so consumers fetch at once). `/readyz`
    /// checks Kafka from here on.
    pub fn outbox(&mut self) -> Result<(Outbox, Relay), StartError> {
        let producer = kafka::producer(&self.kafka)?;
        self.readiness = std::mem::take(&mut self.readiness).kafka(&producer);
        let outbox = Outbox::new(&self.mongo.db, &self.kafka.topic_prefix);
        let relay = outbox
            .relay(&self.mongo.db, producer)
            .announcing(self.authenticator.revocations().redis());
        Ok((outbox, relay))
    }

    /// The service's consumer: the events of `settings` handed to `handler`, fetched as soon as
    /// a relay announces new ones in Redis. `None` when `on` is false (`CONSUME_EVENTS=false`).
    pub async fn consumer<H: EventHandler>(
        &self,
        on: bool,
        settings: ConsumerSettings,
        handler: impl FnOnce() -> H,
    ) -> Result<Option<ConsumerRunner<H>>, StartError> {
        if !on {
            return Ok(None);
        }
        let runner = ConsumerRunner::new(
            &self.kafka,
            settings,
            self.mongo.clone(),
            Arc::new(handler()),
        )
        .await?
        .woken_by(self.redis.url.expose_secret())?;
        Ok(Some(runner))
    }

    /// One more dependency `/readyz` checks (the object store, the fan-out subscription).
    pub fn ready_when<F, Fut>(&mut self, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.readiness = std::mem::take(&mut self.readiness).check(name, check);
    }

    /// The state the service's handlers are given: the token verifier beside `own`.
    pub fn state<T>(&self, own: T) -> Shared<T> {
        Shared::new(self.authenticator.clone(), own)
    }

    /// The service's whole router: its `routes` inside what every service answers the same way
    /// (see [`build`](super::build)).
    pub fn app(self, routes: Router) -> Router {
        super::build(self.name, routes, self.readiness, &self.http)
    }

    /// [`Service::app`] for a service that consumes events: its consumer's dead letters are
    /// routed too (`/api/{service}/admin/dead-letters`).
    pub fn app_consuming<H: EventHandler>(
        self,
        routes: Router,
        consumer: Option<&ConsumerRunner<H>>,
    ) -> Router {
        let routes = crate::deadletters::mount(routes, self.name, consumer, &self.authenticator);
        self.app(routes)
    }
}

/// Why a service could not start: a backend that did not answer or refused what it was asked
/// (connecting, creating indexes or topics), a port that could not be bound, or one of the
/// service's own start-up steps ([`StartError::other`]: a signing key, the object store, seeding).
/// `main` prints it and exits with code 1.
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
    #[error("{step}: {source}")]
    Other {
        step: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StartError {
    /// A start-up step of the service's own that failed, named by `step` ("signing key").
    pub fn other(
        step: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StartError::Other {
            step,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_own_step_is_named_and_keeps_its_cause() {
        let cause = std::io::Error::other("no such bucket");
        let error = StartError::other("object store", cause);
        assert_eq!(error.to_string(), "object store: no such bucket");
        assert_eq!(
            std::error::Error::source(&error).map(ToString::to_string),
            Some("no such bucket".into())
        );
        let text = StartError::other("bootstrap admin", "the email is not valid");
        assert_eq!(text.to_string(), "bootstrap admin: the email is not valid");
    }
}
