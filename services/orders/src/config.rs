//! The orders service's configuration. Every variable is listed in `docs/services/orders.md`.

use std::time::Duration;

use storefront_kit::config::{self as env, ConfigError, ServiceConfig};

#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP, MongoDB, Kafka, Redis and auth's keys, as every service reads them.
    pub common: ServiceConfig,
    /// `ORDER_PAYMENT_WINDOW_SECS`, default 900: an order unpaid this long after it was placed
    /// is cancelled and its stock released.
    pub payment_window: Duration,
    /// `ORDER_EXPIRY_POLL_MS`, default 1000: how often the expiry task looks for due orders.
    pub expiry_poll: Duration,
    /// `ORDER_PAYMENT_HOLD_SECS`, default 60: how long payments' hold on an order lasts (a
    /// cancel answers 409 meanwhile). Longer than payments' Stripe calls take at worst.
    pub payment_hold: Duration,
    /// `ORDER_WAIT_RECHECK_MS`, default 1000: a waiting request (long-poll, payments' hold)
    /// reads the order again this often, to see changes another replica of orders made.
    pub wait_recheck: Duration,
    /// `PRICING_URL`: the pricing function every order is priced through (`POST`, JSON; see
    /// docs/api/pricing.md). Unset: the built-in function, which orders serves itself on a
    /// loopback port and calls over HTTP like any other.
    pub pricing_url: Option<String>,
    /// `PRICING_TIMEOUT_MS`, default 1000: how long the pricing function may take before the
    /// built-in rules price the order instead (recorded on it as the fallback).
    pub pricing_timeout: Duration,
    /// `CONSUME_EVENTS`, default true: run the consumer (product replica, saga answers).
    pub consume_events: bool,
}

impl Config {
    /// The defaults, on these backends (tests set what they need on top).
    pub fn new(common: ServiceConfig) -> Self {
        Config {
            common,
            payment_window: Duration::from_secs(900),
            expiry_poll: Duration::from_millis(1000),
            payment_hold: Duration::from_secs(60),
            wait_recheck: Duration::from_millis(1000),
            pricing_url: None,
            pricing_timeout: Duration::from_millis(1000),
            consume_events: true,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Config {
            common: ServiceConfig::from_env()?,
            payment_window: Duration::from_secs(env::parse_or("ORDER_PAYMENT_WINDOW_SECS", 900)?),
            expiry_poll: Duration::from_millis(env::parse_or("ORDER_EXPIRY_POLL_MS", 1000)?),
            payment_hold: Duration::from_secs(env::parse_or("ORDER_PAYMENT_HOLD_SECS", 60)?),
            wait_recheck: Duration::from_millis(env::parse_or("ORDER_WAIT_RECHECK_MS", 1000)?),
            pricing_url: env::optional("PRICING_URL"),
            pricing_timeout: Duration::from_millis(env::parse_or("PRICING_TIMEOUT_MS", 1000)?),
            consume_events: env::flag("CONSUME_EVENTS", true)?,
        })
    }
}
