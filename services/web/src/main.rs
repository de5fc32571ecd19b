//! `web`: serve the shop and the admin, configured from the environment (docs/services/web.md).

use std::process::ExitCode;

use storefront_web::{Config, SERVICE, run};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!("usage: web    (configured from the environment; see docs/services/web.md)");
        return ExitCode::from(2);
    }
    storefront_kit::main(SERVICE, Config::from_env, run).await
}
