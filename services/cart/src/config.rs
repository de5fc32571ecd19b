//! The cart service's configuration. Every variable is listed in `docs/services/cart.md`.

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
    /// `ORDERS_URL`: the orders service, e.g. `http://orders:8080`; checkout posts there.
    pub orders_url: String,
    /// `CONSUME_EVENTS`, default true: keep the product replica and settle checkouts' held lines
    /// as their orders end.
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
            orders_url: env::required("ORDERS_URL")?,
            consume_events: env::flag("CONSUME_EVENTS", true)?,
        })
    }
}
