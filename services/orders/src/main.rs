//! `orders`: serve the orders service, configured from the environment.

use std::process::ExitCode;

use storefront_orders::Config;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!(
            "usage: orders    (configured from the environment; see docs/services/orders.md)"
        );
        return ExitCode::from(2);
    }
    storefront_kit::telemetry::init(storefront_orders::SERVICE);
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration: {e}");
            eprintln!("orders: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    match storefront_orders::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("orders stopped: {e}");
            eprintln!("orders: {e}");
            ExitCode::FAILURE
        }
    }
}
