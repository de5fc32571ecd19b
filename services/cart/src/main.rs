//! `cart`: serve the cart service, configured from the environment.

use std::process::ExitCode;

use storefront_cart::Config;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!("usage: cart    (configured from the environment; see docs/services/cart.md)");
        return ExitCode::from(2);
    }
    storefront_kit::telemetry::init(storefront_cart::SERVICE);
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration: {e}");
            eprintln!("cart: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    match storefront_cart::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("cart stopped: {e}");
            eprintln!("cart: {e}");
            ExitCode::FAILURE
        }
    }
}
