//! The orders service's configuration. Every variable is listed in `docs/services/orders.md`.

use std::time::Duration;

use storefront_kit::config::{
    self as env, ConfigError, HttpConfig, KafkaConfig, MongoConfig, RedisConfig,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub mongo: MongoConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    /// `JWKS_URL`: auth's public keys.
    pub jwks_url: String,
    /// `ORDER_PAYMENT_WINDOW_SECS`, default 900: an order unpaid this long after it was placed
    /// is cancelled and its stock released.
    pub payment_window: Duration,
    /// `ORDER_EXPIRY_POLL_MS`, default 1000: how often the expiry task looks for due orders.
    pub expiry_poll: Duration,
    /// `CONSUME_EVENTS`, default true: run the consumer (product replica, saga answers).
    pub consume_events: bool,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Config {
            http: HttpConfig::from_env()?,
            mongo: MongoConfig::from_env()?,
            kafka: KafkaConfig::from_env()?,
            redis: RedisConfig::from_env()?,
            jwks_url: env::required("JWKS_URL")?,
            payment_window: Duration::from_secs(env::parse_or("ORDER_PAYMENT_WINDOW_SECS", 900)?),
            expiry_poll: Duration::from_millis(env::parse_or("ORDER_EXPIRY_POLL_MS", 1000)?),
            consume_events: env::flag("CONSUME_EVENTS", true)?,
        })
    }
}
