//! `orders`: serve the orders service, configured from the environment (docs/services/orders.md).

use std::process::ExitCode;

use storefront_orders::{Config, SERVICE, run};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!(
            "usage: orders    (configured from the environment; see docs/services/orders.md)"
        );
        return ExitCode::from(2);
    }
    storefront_kit::main(SERVICE, Config::from_env, run).await
}
