//! auth's configuration: the kit's shared parts plus keys, token lifetimes, the bootstrap admin and
//! sign-in rate limits. Every variable is listed in `docs/services/auth.md`.

use std::time::Duration;

use storefront_kit::{
    SecretString,
    config::{self as env, ConfigError, HttpConfig, KafkaConfig, MongoConfig, RedisConfig},
};

#[derive(Debug, Clone)]
pub struct RateLimits {
    /// `SIGNIN_MAX_FAILURES_PER_EMAIL` (default 5) wrong passwords for one email per window…
    pub failures_per_email: u64,
    /// …`SIGNIN_FAILURE_WINDOW_SECS` (default 900).
    pub failure_window: Duration,
    /// `SIGNIN_MAX_PER_IP` (default 60) attempts, right or wrong, from one client address per…
    pub attempts_per_ip: u64,
    /// …`SIGNIN_IP_WINDOW_SECS` (default 60).
    pub ip_window: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub mongo: MongoConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    /// The PKCS#8 PEM of the Ed25519 signing key (`SIGNING_KEY_PEM`, or the file at
    /// `SIGNING_KEY_FILE`).
    pub signing_key_pem: SecretString,
    /// `ACCESS_TOKEN_TTL_SECS`, default 900 (15 min).
    pub access_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS`, default 604800 (7 days).
    pub refresh_ttl: Duration,
    /// `ADMIN_EMAIL` + `ADMIN_PASSWORD`: an admin created at start if no account has that email.
    pub bootstrap_admin: Option<(String, SecretString)>,
    pub rate_limits: RateLimits,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let signing_key_pem = match env::optional("SIGNING_KEY_PEM") {
            Some(pem) => pem,
            None => {
                let path = env::required("SIGNING_KEY_FILE").map_err(|_| ConfigError::Missing {
                    var: "SIGNING_KEY_FILE (or SIGNING_KEY_PEM)".into(),
                })?;
                std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                    var: "SIGNING_KEY_FILE".into(),
                    value: path,
                    reason: e.to_string(),
                })?
            }
        };
        let bootstrap_admin = match (
            env::optional("ADMIN_EMAIL"),
            env::optional("ADMIN_PASSWORD"),
        ) {
            (Some(email), Some(password)) => Some((email, password.into())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: "ADMIN_PASSWORD (ADMIN_EMAIL is set)".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: "ADMIN_EMAIL (ADMIN_PASSWORD is set)".into(),
                });
            }
        };
        Ok(Config {
            http: HttpConfig::from_env()?,
            mongo: MongoConfig::from_env()?,
            kafka: KafkaConfig::from_env()?,
            redis: RedisConfig::from_env()?,
            signing_key_pem: signing_key_pem.into(),
            access_ttl: Duration::from_secs(env::parse_or("ACCESS_TOKEN_TTL_SECS", 900)?),
            refresh_ttl: Duration::from_secs(env::parse_or(
                "REFRESH_TOKEN_TTL_SECS",
                7 * 24 * 3600,
            )?),
            bootstrap_admin,
            rate_limits: RateLimits {
                failures_per_email: env::parse_or("SIGNIN_MAX_FAILURES_PER_EMAIL", 5)?,
                failure_window: Duration::from_secs(env::parse_or(
                    "SIGNIN_FAILURE_WINDOW_SECS",
                    900,
                )?),
                attempts_per_ip: env::parse_or("SIGNIN_MAX_PER_IP", 60)?,
                ip_window: Duration::from_secs(env::parse_or("SIGNIN_IP_WINDOW_SECS", 60)?),
            },
        })
    }
}
