//! `products`: serve the products service, or `products seed-demo` to add the demo catalog to an
//! empty database. Configured from the environment either way.

use std::process::ExitCode;

use storefront_products::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.as_slice() {
        [] => None,
        [command] if command == "seed-demo" || command == "resync" => Some(command.as_str()),
        _ => {
            eprintln!(
                "usage: products              serve (configured from the environment; see docs/services/products.md)\n       products seed-demo    add the demo catalog to an empty database\n       products resync       publish every product's snapshot for replicas that missed events"
            );
            return ExitCode::from(2);
        }
    };
    storefront_kit::telemetry::init(storefront_products::SERVICE);
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration: {e}");
            eprintln!("products: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    if command == Some("resync") {
        return match storefront_products::resync(&config).await {
            Ok(n) => {
                println!("products: published the snapshots of {n} products");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("products: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if command == Some("seed-demo") {
        return match storefront_products::seed_demo(&config).await {
            Ok(0) => {
                println!("products: the catalog is not empty; nothing seeded");
                ExitCode::SUCCESS
            }
            Ok(n) => {
                println!("products: seeded {n} demo products");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("products: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match storefront_products::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("products stopped: {e}");
            eprintln!("products: {e}");
            ExitCode::FAILURE
        }
    }
}
