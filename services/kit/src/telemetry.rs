//! Logging with `tracing`: pretty for people locally, JSON (`LOG_FORMAT=json`) in clusters.
//! The filter comes from `RUST_LOG` (default `info`).

use tracing_subscriber::{EnvFilter, fmt};

pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // `try_init`: a second call (tests spawning several apps) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
    tracing::info!(service, "starting");
}
