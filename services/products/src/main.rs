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
    storefront_kit::main(
        storefront_products::SERVICE,
        Config::from_env,
        |config| async move {
            match command {
                Some("resync") => {
                    let n = storefront_products::resync(&config).await?;
                    println!("products: published the snapshots of {n} products");
                }
                Some(_) => match storefront_products::seed_demo(&config).await? {
                    0 => println!("products: the catalog is not empty; nothing seeded"),
                    n => println!("products: seeded {n} demo products"),
                },
                None => storefront_products::run(config).await?,
            }
            Ok::<_, storefront_products::StartError>(())
        },
    )
    .await
}
