//! The cart service's configuration. Every variable is listed in `docs/services/cart.md`.

use storefront_kit::config::{self as env, ConfigError, ServiceConfig};

#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP, MongoDB, Kafka, Redis and auth's keys, as every service reads them.
    pub common: ServiceConfig,
    /// `ORDERS_URL`: the orders service, e.g. `http://orders:8080`; checkout posts there.
    pub orders_url: String,
    /// `CONSUME_EVENTS`, default true: keep the product replica and settle checkouts' held lines
    /// as their orders end.
    pub consume_events: bool,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Config {
            common: ServiceConfig::from_env()?,
            orders_url: env::required("ORDERS_URL")?,
            consume_events: env::flag("CONSUME_EVENTS", true)?,
        })
    }
}
