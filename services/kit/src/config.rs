//! Configuration from the environment (12-factor), read once at start.
//!
//! Every reader returns a [`ConfigError`] that names the variable and says what is wrong with it, so
//! a misconfigured pod fails at start with one clear line instead of misbehaving later.

use std::{fmt::Display, str::FromStr, time::Duration};

use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {var} is required but not set")]
    Missing { var: String },
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid {
        var: String,
        value: String,
        reason: String,
    },
}

/// The body an image upload route reads before its own rules answer (the gateway's and the
/// Ingress's limit for those routes; xtask/src/services.rs, operator/src/build.rs): a service that
/// stopped reading earlier would close a connection the proxy is still sending on (a 502).
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

/// The raw value of `var`, if set and not empty.
pub fn optional(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// The value of `var`, which must be set.
pub fn required(var: &str) -> Result<String, ConfigError> {
    optional(var).ok_or_else(|| ConfigError::Missing { var: var.into() })
}

/// `var` parsed as `T`, or `default` when unset.
pub fn parse_or<T>(var: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match optional(var) {
        None => Ok(default),
        Some(value) => parse_value(var, value),
    }
}

/// `var` parsed as `T`, or `None` when unset.
pub fn parse_optional<T>(var: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    optional(var)
        .map(|value| parse_value(var, value))
        .transpose()
}

/// `var` parsed as `T`; it must be set.
pub fn parse_required<T>(var: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    parse_value(var, required(var)?)
}

fn parse_value<T>(var: &str, value: String) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid {
            var: var.into(),
            reason: e.to_string(),
            value,
        })
}

/// A boolean: `true/false`, `1/0`, `yes/no`, `on/off`.
pub fn flag(var: &str, default: bool) -> Result<bool, ConfigError> {
    match optional(var) {
        None => Ok(default),
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                var: var.into(),
                value,
                reason: "expected true or false".into(),
            }),
        },
    }
}

/// A comma-separated list; empty when unset.
pub fn list(var: &str) -> Vec<String> {
    optional(var)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// What every HTTP service reads: where to listen and how to guard its edge.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `BIND_ADDR`, default `0.0.0.0:8080`.
    pub bind_addr: String,
    /// `MAX_BODY_BYTES`, default 64 KiB: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `REQUEST_TIMEOUT_SECS`, default 15.
    pub request_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`, comma-separated; none allowed cross-origin when empty.
    pub cors_allowed_origins: Vec<String>,
    /// `COOKIE_SECURE`, default true; only a local plain-http stack turns it off.
    pub cookie_secure: bool,
    /// `TRUST_PROXY_HEADERS`, default false: take the client address from `X-Real-IP` (set by the
    /// gateway/Ingress) instead of the socket peer. Only behind a proxy that overwrites it.
    pub trust_proxy_headers: bool,
    /// `SHUTDOWN_DRAIN_SECS`, default 0: after SIGTERM, keep serving this long while `/readyz`
    /// says 503 and every response closes its connection, so Kubernetes takes the pod out of its
    /// Services and clients move to the other pods before the server stops accepting (what a
    /// `preStop` sleep gives elsewhere; the operator sets it). Then in-flight requests finish.
    pub shutdown_drain: Duration,
}

impl HttpConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(HttpConfig {
            bind_addr: optional("BIND_ADDR").unwrap_or_else(|| "0.0.0.0:8080".into()),
            max_body_bytes: parse_or("MAX_BODY_BYTES", 64 * 1024)?,
            request_timeout: Duration::from_secs(parse_or("REQUEST_TIMEOUT_SECS", 15)?),
            cors_allowed_origins: list("CORS_ALLOWED_ORIGINS"),
            cookie_secure: flag("COOKIE_SECURE", true)?,
            trust_proxy_headers: flag("TRUST_PROXY_HEADERS", false)?,
            shutdown_drain: Duration::from_secs(parse_or("SHUTDOWN_DRAIN_SECS", 0)?),
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind_addr: "127.0.0.1:0".into(),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(15),
            cors_allowed_origins: Vec::new(),
            cookie_secure: true,
            trust_proxy_headers: false,
            shutdown_drain: Duration::ZERO,
        }
    }
}

/// `MONGODB_URI` and `MONGODB_DATABASE` (this service's own database).
#[derive(Debug, Clone)]
pub struct MongoConfig {
    /// A secret: a real deployment's URI carries the user's password.
    pub uri: SecretString,
    pub database: String,
}

impl MongoConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(MongoConfig {
            uri: required("MONGODB_URI")?.into(),
            database: required("MONGODB_DATABASE")?,
        })
    }
}

/// Kafka: `KAFKA_BOOTSTRAP_SERVERS`, `TOPIC_PREFIX` (the shop's name), and client tuning.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub topic_prefix: String,
    /// `KAFKA_ENSURE_TOPICS`, default false: create this service's topics at start. In a cluster
    /// the operator creates them; the one-machine stack and tests turn this on.
    pub ensure_topics: bool,
    /// `KAFKA_PARTITIONS` for topics this service creates, default 3.
    pub partitions: i32,
    /// `KAFKA_FETCH_WAIT_MAX_MS`: how long the broker may hold a fetch that found nothing. Unset:
    /// librdkafka's default (500 ms), right for a real Kafka, which answers a held fetch as soon as
    /// a message arrives. The local broker (tansu) holds every fetch for the whole wait, even one
    /// that found records, so the one-machine stack sets 3.
    pub fetch_wait_max_ms: Option<u32>,
    /// `KAFKA_IDLE_FETCH_INTERVAL_MS`: a consumer that saw nothing for 2 s stops fetching and
    /// looks again only this often, until a message comes. Unset: never (a real Kafka's long
    /// fetch costs nothing while idle). With a short fetch wait against tansu it is what keeps an
    /// idle fleet cheap; the one-machine stack sets 250.
    pub idle_fetch_interval: Option<Duration>,
    /// `KAFKA_CONSUMER_LANES`, default 8: how many keys a consumer applies at once. Events of one
    /// key (one order, one product) are always applied one at a time, in order.
    pub consumer_lanes: usize,
}

impl KafkaConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(KafkaConfig {
            bootstrap_servers: required("KAFKA_BOOTSTRAP_SERVERS")?,
            topic_prefix: optional("TOPIC_PREFIX").unwrap_or_else(|| "storefront".into()),
            ensure_topics: flag("KAFKA_ENSURE_TOPICS", false)?,
            partitions: parse_or("KAFKA_PARTITIONS", 3)?,
            fetch_wait_max_ms: parse_optional("KAFKA_FETCH_WAIT_MAX_MS")?,
            idle_fetch_interval: parse_optional("KAFKA_IDLE_FETCH_INTERVAL_MS")?
                .map(Duration::from_millis),
            consumer_lanes: parse_or("KAFKA_CONSUMER_LANES", 8)?,
        })
    }
}

/// `REDIS_URL`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// A secret: it may carry the password (`redis://:password@host`).
    pub url: SecretString,
}

impl RedisConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(RedisConfig {
            url: required("REDIS_URL")?.into(),
        })
    }
}

/// What every service that keeps its own data and trusts auth's tokens reads, besides its own
/// settings: all services but auth (which signs the tokens) and web (which keeps no data).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub http: HttpConfig,
    pub mongo: MongoConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    /// `JWKS_URL`: auth's public keys, e.g. `http://auth:8080/.well-known/jwks.json`.
    pub jwks_url: String,
}

impl ServiceConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(ServiceConfig {
            http: HttpConfig::from_env()?,
            mongo: MongoConfig::from_env()?,
            kafka: KafkaConfig::from_env()?,
            redis: RedisConfig::from_env()?,
            jwks_url: required("JWKS_URL")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn credentials_in_addresses_never_show_in_debug_output() {
        let mongo = MongoConfig {
            uri: "mongodb://shop:hunter2@mongo:27017/?replicaSet=rs0".into(),
            database: "orders".into(),
        };
        let redis = RedisConfig {
            url: "redis://:hunter3@redis:6379".into(),
        };
        let printed = format!("{mongo:?} {redis:?}");
        assert!(!printed.contains("hunter"), "{printed}");
        assert!(printed.contains("orders"), "{printed}");
        // What the clients are given is the whole address.
        assert!(mongo.uri.expose_secret().contains("shop:hunter2@"));
        assert_eq!(redis.url.expose_secret(), "redis://:hunter3@redis:6379");
    }
}
