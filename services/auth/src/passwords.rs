//! argon2id password hashing, off the async runtime (each hash costs ~19 MiB and tens of ms).
//!
//! At most one hash per core runs at a time. Unbounded, a burst of sign-ins spreads 19 MiB
//! allocations over many blocking threads, each of which keeps its own malloc arena: the bench
//! measured 5.3 GiB RSS at 32 concurrent sign-ins. Bounded, memory stays at a few hashes' worth,
//! throughput is the same (the cores were the limit anyway), and a flood of attempts queues
//! instead of exhausting memory.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use storefront_kit::Error;

/// argon2id with the OWASP parameters (m = 19 MiB, t = 2, p = 1): `Argon2::default()`.
pub async fn hash(password: String) -> Result<String, Error> {
    let _permit = permits().acquire().await.map_err(Error::internal)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(Error::internal)
    })
    .await
    .map_err(Error::internal)?
}

/// Whether `password` matches `stored`. With `None` (no such account) it verifies against a dummy
/// hash anyway, so a wrong email costs as long as a wrong password and cannot be told apart.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, Error> {
    let _permit = permits().acquire().await.map_err(Error::internal)?;
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let parsed = PasswordHash::new(&stored).map_err(Error::internal)?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(real && matches)
    })
    .await
    .map_err(Error::internal)?
}

fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS
        .get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"no account has this password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}
