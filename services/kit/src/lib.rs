//! `storefront-kit`: the shared kernel every Storefront service is built on.
//!
//! One way to do each cross-cutting thing, so services only write their domain:
//! - [`config`]: typed configuration read once from the environment, errors naming the variable;
//! - [`telemetry`]: `tracing` (JSON when `LOG_FORMAT=json`);
//! - [`error`]: one [`Error`] type rendered as RFC 9457 problem+json, and the [`Json`] extractor
//!   that turns malformed bodies into problems instead of axum's plain-text rejections;
//! - [`server`]: the router around a service's routes (`/healthz`, `/readyz`, `/metrics`, request
//!   ids, body limit, timeout, security headers, CORS) and serving with graceful shutdown;
//! - [`auth`]: verifying access tokens against auth's JWKS, the Redis revocation list, and the
//!   [`auth::CurrentUser`] / [`auth::RequireAdmin`] extractors;
//! - [`mongo`], [`outbox`]: a per-service database, and state change + event in one transaction,
//!   relayed to Kafka;
//! - [`kafka`]: client settings, topic creation, and the consumer runner (idempotent, retried,
//!   dead-lettered);
//! - [`replica`]: version-ordered replicas, and the product replica cart and orders keep;
//! - [`validate`]: gathering field errors, cleaning free text.

pub mod auth;
pub mod config;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod mongo;
pub mod outbox;
pub mod replica;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

pub use error::{Error, FieldError, Json};

/// The whole `main` of a service binary: tracing, configuration (a bad variable stops it with a
/// line naming it), then `run` until it returns. Exit code 1 on either failure.
pub async fn main<C, E, Fut>(
    service: &str,
    config: impl FnOnce() -> Result<C, config::ConfigError>,
    run: impl FnOnce(C) -> Fut,
) -> std::process::ExitCode
where
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    telemetry::init(service);
    let config = match config() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration: {e}");
            eprintln!("{service}: configuration: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{service} stopped: {e}");
            eprintln!("{service}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
