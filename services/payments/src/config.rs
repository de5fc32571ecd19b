//! The payments service's configuration. Every variable is listed in `docs/services/orders.md`.

use std::time::Duration;

use storefront_kit::{
    SecretString,
    config::{self as env, ConfigError, ServiceConfig},
};

#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP, MongoDB, Kafka, Redis and auth's keys, as every service reads them.
    pub common: ServiceConfig,
    /// `STRIPE_SECRET_KEY`.
    pub stripe_secret_key: SecretString,
    /// `STRIPE_API_BASE`: Stripe's address; unset for the real one (the local stack points it at
    /// its stand-in).
    pub stripe_api_base: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET`: the signing secret of the webhook endpoint (`whsec_…`).
    pub stripe_webhook_secret: SecretString,
    /// `ORDERS_URL`: the orders service, e.g. `http://orders:8080`; payments holds an order there
    /// before it charges.
    pub orders_url: String,
    /// `PAYMENT_ORDER_WAIT_SECS`, default 10 (1–10): how long paying an order whose stock is
    /// still being reserved waits for it.
    pub order_wait: Duration,
    /// `REFUND_POLL_MS`, default 5000: how often the refund task looks for due refunds when
    /// nothing woke it (retries, refunds stored by another replica).
    pub refund_poll: Duration,
    /// `CONSUME_EVENTS`, default true: take refund requests from orders.
    pub consume_events: bool,
}

impl Config {
    /// The defaults, on these backends (tests set what they need on top).
    pub fn new(
        common: ServiceConfig,
        stripe_secret_key: String,
        stripe_api_base: Option<String>,
        stripe_webhook_secret: String,
        orders_url: String,
    ) -> Self {
        Config {
            common,
            stripe_secret_key: stripe_secret_key.into(),
            stripe_api_base,
            stripe_webhook_secret: stripe_webhook_secret.into(),
            orders_url,
            order_wait: Duration::from_secs(10),
            refund_poll: Duration::from_millis(5000),
            consume_events: true,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Config {
            common: ServiceConfig::from_env()?,
            stripe_secret_key: env::required("STRIPE_SECRET_KEY")?.into(),
            stripe_api_base: env::optional("STRIPE_API_BASE"),
            stripe_webhook_secret: env::required("STRIPE_WEBHOOK_SECRET")?.into(),
            orders_url: env::required("ORDERS_URL")?,
            order_wait: Duration::from_secs(
                env::parse_or::<u64>("PAYMENT_ORDER_WAIT_SECS", 10)?.clamp(1, 10),
            ),
            refund_poll: Duration::from_millis(env::parse_or("REFUND_POLL_MS", 5000)?),
            consume_events: env::flag("CONSUME_EVENTS", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use storefront_kit::ExposeSecret;

    use storefront_kit::config::{HttpConfig, KafkaConfig, MongoConfig, RedisConfig};

    use super::*;

    #[test]
    fn stripe_keys_never_show_in_debug_output() {
        let common = ServiceConfig {
            http: HttpConfig::default(),
            mongo: MongoConfig {
                uri: "mongodb://mongo:27017".into(),
                database: "payments".into(),
            },
            kafka: KafkaConfig {
                bootstrap_servers: "kafka:9092".into(),
                topic_prefix: "storefront".into(),
                ensure_topics: false,
                partitions: 3,
                fetch_wait_max_ms: None,
                idle_fetch_interval: None,
                consumer_lanes: 8,
            },
            redis: RedisConfig {
                url: "redis://redis:6379".into(),
            },
            jwks_url: "http://auth:8080/.well-known/jwks.json".into(),
        };
        let config = Config::new(
            common,
            "sk_live_do_not_print".into(),
            None,
            "whsec_do_not_print".into(),
            "http://orders:8080".into(),
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("do_not_print"), "{printed}");
        assert!(printed.contains("http://orders:8080"), "{printed}");
        assert_eq!(
            config.stripe_secret_key.expose_secret(),
            "sk_live_do_not_print"
        );
        assert_eq!(
            config.stripe_webhook_secret.expose_secret(),
            "whsec_do_not_print"
        );
    }
}
