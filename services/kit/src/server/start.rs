//! What every service's `lib.rs` shares besides its own parts: the state its handlers are given
//! ([`Shared`]), its token verifier, database, topics and consumer made from its common settings
//! ([`ServiceConfig::authenticator`], [`ServiceConfig::connect`], [`ServiceConfig::consumer`]),
//! and the error its start can end in ([`StartError`]).

use std::{ops::Deref, sync::Arc};

use axum::extract::FromRef;
use secrecy::ExposeSecret;
use storefront_events::Topic;

use crate::{
    auth::Authenticator,
    config::ServiceConfig,
    kafka::{self, ConsumerRunner, ConsumerSettings, EventHandler},
    mongo::Mongo,
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

    /// The service's own database, and — when `KAFKA_ENSURE_TOPICS` asks (the one-machine stack
    /// and tests; in a cluster the operator creates them) — the `topics` it writes or reads.
    pub async fn connect(&self, service: &str, topics: &[Topic]) -> Result<Mongo, StartError> {
        let mongo = Mongo::connect(&self.mongo, service).await?;
        if self.kafka.ensure_topics {
            let names: Vec<String> = topics
                .iter()
                .map(|t| t.name(&self.kafka.topic_prefix))
                .collect();
            kafka::ensure_topics(&self.kafka, &names).await?;
        }
        Ok(mongo)
    }

    /// The service's consumer: the events of `settings` handed to `handler`, fetched as soon as
    /// a relay announces new ones in Redis. `None` when `on` is false (`CONSUME_EVENTS=false`).
    pub async fn consumer<H: EventHandler>(
        &self,
        on: bool,
        settings: ConsumerSettings,
        mongo: &Mongo,
        handler: impl FnOnce() -> H,
    ) -> Result<Option<ConsumerRunner<H>>, StartError> {
        if !on {
            return Ok(None);
        }
        let runner = ConsumerRunner::new(&self.kafka, settings, mongo.clone(), Arc::new(handler()))
            .await?
            .woken_by(self.redis.url.expose_secret())?;
        Ok(Some(runner))
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
