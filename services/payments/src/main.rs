//! `payments`: serve the payments service, configured from the environment (docs/services/orders.md).

use std::process::ExitCode;

use storefront_payments::{Config, SERVICE, run};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!(
            "usage: payments    (configured from the environment; see docs/services/orders.md)"
        );
        return ExitCode::from(2);
    }
    storefront_kit::main(SERVICE, Config::from_env, run).await
}
