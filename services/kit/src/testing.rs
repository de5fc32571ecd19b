//! Test support: the backends `cargo xtask test` started, and unique names per test.
//!
//! Tests never skip because a backend is missing: [`TestStack::from_env`] panics with the reason,
//! so a test run outside `cargo xtask test` fails loudly instead of passing vacuously.

use std::{net::SocketAddr, time::Duration};

use axum::Router;
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
    producer::FutureRecord,
};
use storefront_events::Envelope;

use uuid::Uuid;

use crate::{
    auth::{Claims, ISSUER, Role, UserId},
    config::{HttpConfig, KafkaConfig, MongoConfig, RedisConfig, ServiceConfig},
};

/// The claims of an access token auth would issue to `sub` as `role`, valid for `ttl_secs` from
/// now (negative: already expired); sign them with a test key.
pub fn claims(sub: impl Into<UserId>, role: Role, ttl_secs: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: ISSUER.into(),
        sub: sub.into(),
        email: "someone@example.com".into(),
        role,
        jti: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        iat: now,
        exp: now + ttl_secs,
    }
}

/// Where the stack's backends listen, from the environment `cargo xtask test` sets.
#[derive(Debug, Clone)]
pub struct TestStack {
    pub mongodb_uri: String,
    pub kafka_bootstrap: String,
    pub redis_url: String,
    pub s3_endpoint: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    pub stripe_url: String,
    pub stripe_secret_key: String,
}

fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through `cargo xtask test`, which starts the backends"
        )
    })
}

impl TestStack {
    pub fn from_env() -> Self {
        TestStack {
            mongodb_uri: stack_var("STOREFRONT_TEST_MONGODB_URI"),
            kafka_bootstrap: stack_var("STOREFRONT_TEST_KAFKA_BOOTSTRAP"),
            redis_url: stack_var("STOREFRONT_TEST_REDIS_URL"),
            s3_endpoint: stack_var("STOREFRONT_TEST_S3_ENDPOINT"),
            s3_access_key: stack_var("STOREFRONT_TEST_S3_ACCESS_KEY"),
            s3_secret_key: stack_var("STOREFRONT_TEST_S3_SECRET_KEY"),
            stripe_url: stack_var("STOREFRONT_TEST_STRIPE_URL"),
            stripe_secret_key: stack_var("STOREFRONT_TEST_STRIPE_SECRET_KEY"),
        }
    }

    pub fn mongo(&self, database: &str) -> MongoConfig {
        MongoConfig {
            uri: self.mongodb_uri.clone().into(),
            database: database.to_owned(),
        }
    }

    pub fn redis(&self) -> RedisConfig {
        RedisConfig {
            url: self.redis_url.clone().into(),
        }
    }

    pub fn kafka(&self, topic_prefix: &str) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.kafka_bootstrap.clone(),
            topic_prefix: topic_prefix.to_owned(),
            ensure_topics: true,
            partitions: 1,
            // What the one-machine stack sets for the local broker.
            fetch_wait_max_ms: Some(10),
            idle_fetch_interval: Some(Duration::from_millis(250)),
            consumer_lanes: 8,
        }
    }

    /// A service's common settings on these backends: its own `database`, the shop's
    /// `topic_prefix`, auth's keys at `jwks_url`, HTTP defaults.
    pub fn service(&self, database: &str, topic_prefix: &str, jwks_url: &str) -> ServiceConfig {
        ServiceConfig {
            http: HttpConfig::default(),
            mongo: self.mongo(database),
            kafka: self.kafka(topic_prefix),
            redis: self.redis(),
            jwks_url: jwks_url.to_owned(),
        }
    }
}

/// `prefix_` and 12 random hex characters: a database, topic prefix or key namespace of one test.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Serves `app` on a random loopback port for the rest of the test process.
pub async fn spawn(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = crate::server::serve(listener, app, std::future::pending()).await;
    });
    addr
}

/// Sends `envelope` to `topic` as another service's relay would: keyed by its aggregate, the
/// envelope as it is (a replay keeps its id).
pub async fn produce<D: serde::Serialize>(
    producer: &crate::kafka::KafkaProducer,
    topic: &str,
    envelope: &Envelope<D>,
) {
    let payload = serde_json::to_vec(envelope).expect("an envelope is JSON");
    producer
        .send(
            FutureRecord::to(topic).key(&envelope.key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce an event");
}

/// Every event on `topic` from its start until `expected` arrived, then 2 s more to catch
/// duplicates (or 60 s in all, whatever came).
pub async fn consume(bootstrap: &str, topic: &str, expected: usize) -> Vec<Envelope> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .expect("a Kafka consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut grace = None;
    loop {
        let until = grace.unwrap_or(deadline);
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                events.push(Envelope::from_slice(payload).expect("an envelope"));
                if events.len() >= expected && grace.is_none() {
                    grace = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                }
            }
            Ok(Err(e)) => panic!("kafka: {e}"),
            Err(_) => break,
        }
    }
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    events
}
