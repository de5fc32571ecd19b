//! `storefront-kit`: the shared kernel every Storefront service is built on.
//!
//! One way to do each cross-cutting thing, so services only write their domain:
//! - [`config`]: typed configuration read once from the environment, errors naming the variable;
//! - [`telemetry`]: `tracing` logs (JSON when `LOG_FORMAT=json`) and OpenTelemetry traces across
//!   HTTP and Kafka (exported by OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set);
//! - [`error`]: one [`Error`] type rendered as RFC 9457 problem+json, and the [`Json`] extractor
//!   that turns malformed bodies into problems instead of axum's plain-text rejections;
//! - [`server`]: the router around a service's routes (`/healthz`, `/readyz`, `/metrics`, request
//!   ids, body limit, timeout, security headers, CORS), and [`server::run`]: a service's life —
//!   serving with graceful shutdown, its background tasks (relay, consumer…) stopped in stages;
//! - [`auth`]: verifying access tokens against auth's JWKS, the Redis revocation list, and the
//!   [`auth::CurrentUser`] / [`auth::RequireAdmin`] extractors;
//! - [`mongo`], [`outbox`]: a per-service database, and state change + event in one transaction,
//!   relayed to Kafka;
//! - [`kafka`]: client settings, topic creation, and the consumer runner (idempotent, retried,
//!   dead-lettered);
//! - [`fanout`]: live news over Redis pub/sub that is not stored (a cart's count);
//! - [`replica`]: version-ordered replicas, and the product replica cart and orders keep;
//! - [`validate`]: gathering field errors, cleaning free text;
//! - [`openapi`]: each service's OpenAPI 3.1 document, from its types and its operations.

pub mod auth;
pub mod config;
pub mod deadletters;
pub mod error;
pub mod fanout;
pub mod kafka;
pub mod metrics;
pub mod mongo;
pub mod openapi;
pub mod outbox;
pub mod replica;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

pub use error::{Error, FieldError, Json};
/// Secrets in config (keys, passwords, URLs that may carry credentials): `Debug` prints
/// `[REDACTED]`, and reading one is a visible `expose_secret()`.
pub use secrecy::{ExposeSecret, SecretString};

/// The whole `main` of a service binary: tracing, configuration (a bad variable stops it with a
/// line naming it), then `run` until it returns, and the process exits (code 1 on either
/// failure) without waiting for leftover blocking threads.
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
    let code = match run(config).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{service} stopped: {e}");
            eprintln!("{service}: {e}");
            1
        }
    };
    // Everything that needs finishing has finished (requests drained, consumers' offsets
    // committed, the relay stopped). Leave now rather than when the runtime is dropped: the
    // runtime waits for its blocking threads, and a Kafka client's destroy can block on one for
    // long (BACKENDS: librdkafka), which kept stopping pods alive until their grace period ran out.
    tracing::info!(service, code, "stopped");
    telemetry::shutdown();
    std::process::exit(code)
}
