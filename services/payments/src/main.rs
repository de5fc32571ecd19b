//! `payments`: serve the payments service, configured from the environment.

use std::process::ExitCode;

use storefront_payments::Config;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!(
            "usage: payments    (configured from the environment; see docs/services/payments.md)"
        );
        return ExitCode::from(2);
    }
    storefront_kit::telemetry::init(storefront_payments::SERVICE);
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration: {e}");
            eprintln!("payments: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    match storefront_payments::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("payments stopped: {e}");
            eprintln!("payments: {e}");
            ExitCode::FAILURE
        }
    }
}
