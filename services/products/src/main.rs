//! `products`: serve the products service, or `products seed-demo` to add the demo catalog to an
//! empty database. Configured from the environment either way.

use std::process::ExitCode;

use storefront_products::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = match args.as_slice() {
        [] => false,
        [command] if command == "seed-demo" => true,
        _ => {
            eprintln!(
                "usage: products              serve (configured from the environment; see docs/services/products.md)\n       products seed-demo    add the demo catalog to an empty database"
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
    if seed {
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
