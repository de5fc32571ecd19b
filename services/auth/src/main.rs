//! `auth`: serve the auth service, or `auth generate-key FILE` to write a new signing key.

use std::process::ExitCode;

use storefront_auth::{Config, keys::SigningKey};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, path] = args.as_slice()
        && command == "generate-key"
    {
        return match SigningKey::generate_pem().map(|pem| std::fs::write(path, pem)) {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("auth: cannot write {path}: {e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("auth: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if !args.is_empty() {
        eprintln!(
            "usage: auth                      serve (configured from the environment)\n       auth generate-key FILE    write a new Ed25519 signing key (PKCS#8 PEM)"
        );
        return ExitCode::from(2);
    }
    storefront_kit::main(
        storefront_auth::SERVICE,
        Config::from_env,
        storefront_auth::run,
    )
    .await
}
