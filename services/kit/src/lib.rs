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
