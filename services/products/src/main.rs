//! `products`: serve the products service, configured from the environment.

use std::process::ExitCode;

use storefront_products::Config;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!(
            "usage: products    (configured from the environment; see docs/services/products.md)"
        );
        return ExitCode::from(2);
    }
    storefront_kit::telemetry::init(storefront_products::SERVICE);
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration: {e}");
            eprintln!("products: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    match storefront_products::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("products stopped: {e}");
            eprintln!("products: {e}");
            ExitCode::FAILURE
        }
    }
}
