//! `notifications`: serve the notifications service, configured from the environment
//! (docs/services/notifications.md).

use std::process::ExitCode;

use storefront_notifications::{Config, SERVICE, run};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!(
            "usage: notifications    (configured from the environment; see docs/services/notifications.md)"
        );
        return ExitCode::from(2);
    }
    storefront_kit::main(SERVICE, Config::from_env, run).await
}
