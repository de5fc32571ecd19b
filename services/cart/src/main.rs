//! `cart`: serve the cart service, configured from the environment (docs/services/orders.md).

use std::process::ExitCode;

use storefront_cart::{Config, SERVICE, run};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!("usage: cart    (configured from the environment; see docs/services/orders.md)");
        return ExitCode::from(2);
    }
    storefront_kit::main(SERVICE, Config::from_env, run).await
}
