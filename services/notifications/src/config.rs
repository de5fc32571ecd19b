//! The notifications service's configuration. Every variable is listed in
//! `docs/services/notifications.md`.

use std::time::Duration;

use storefront_kit::config::{self as env, ConfigError, ServiceConfig};

#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP, MongoDB, Kafka, Redis and auth's keys, as every service reads them.
    pub common: ServiceConfig,
    /// `CONSUME_EVENTS`, default true: turn events into notifications. Every replica may consume;
    /// the group shares the partitions.
    pub consume_events: bool,
    pub sockets: SocketConfig,
}

/// How sockets are kept.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// `WS_PING_SECS`, default 25: a ping every this often; a socket that did not answer the
    /// previous one is dropped. The token is checked again (revoked, expired) at each ping.
    pub ping_interval: Duration,
    /// `WS_SEND_BUFFER`, default 256: notifications queued for one socket. A client that falls
    /// this far behind is disconnected (code 1013) and catches up with its cursor on reconnect.
    pub send_buffer: usize,
    /// `WS_BACKLOG_MAX`, default 500: most missed notifications replayed on a reconnect; the
    /// rest are in `GET /api/notifications`.
    pub backlog_max: usize,
    /// `WS_MAX_PER_USER`, default 20: open sockets per user on one replica.
    pub max_per_user: usize,
    /// `WS_MAX_PRODUCT_SOCKETS`, default 5000: public product sockets (live stock, anyone may
    /// open one) on one replica; beyond it a new one is refused with 503.
    pub max_product_sockets: usize,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            ping_interval: Duration::from_secs(25),
            send_buffer: 256,
            backlog_max: 500,
            max_per_user: 20,
            max_product_sockets: 5000,
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = SocketConfig::default();
        Ok(Config {
            common: ServiceConfig::from_env()?,
            consume_events: env::flag("CONSUME_EVENTS", true)?,
            sockets: SocketConfig {
                ping_interval: Duration::from_secs(
                    env::parse_or("WS_PING_SECS", defaults.ping_interval.as_secs())?.max(1),
                ),
                send_buffer: env::parse_or("WS_SEND_BUFFER", defaults.send_buffer)?.max(1),
                backlog_max: env::parse_or("WS_BACKLOG_MAX", defaults.backlog_max)?,
                max_per_user: env::parse_or("WS_MAX_PER_USER", defaults.max_per_user)?.max(1),
                max_product_sockets: env::parse_or(
                    "WS_MAX_PRODUCT_SOCKETS",
                    defaults.max_product_sockets,
                )?,
            },
        })
    }
}
