//! The payments service's configuration. Every variable is listed in `docs/services/payments.md`.

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
    /// `STRIPE_SECRET_KEY`.
    pub stripe_secret_key: String,
    /// `STRIPE_API_BASE`: Stripe's address; unset for the real one (the local stack points it at
    /// its stand-in).
    pub stripe_api_base: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET`: the signing secret of the webhook endpoint (`whsec_…`).
    pub stripe_webhook_secret: String,
    /// `CONSUME_EVENTS`, default true: keep the order replica.
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
            stripe_secret_key: env::required("STRIPE_SECRET_KEY")?,
            stripe_api_base: env::optional("STRIPE_API_BASE"),
            stripe_webhook_secret: env::required("STRIPE_WEBHOOK_SECRET")?,
            consume_events: env::flag("CONSUME_EVENTS", true)?,
        })
    }
}
