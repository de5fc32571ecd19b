//! What the operator's test files share. Not every file uses every helper.
#![allow(dead_code)]

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A variable `cargo xtask test` sets for the test stack.
pub fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run through `cargo xtask test`"))
}

/// A name no other test (or run) uses: `{label}{separator}{pid}{separator}{nanos}`.
pub fn unique(label: &str, separator: char) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{label}{separator}{}{separator}{nanos}", std::process::id())
}

/// The repository's root (the manifests, the chart, the CRD).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What one look at a condition found: the value once it holds; `None`, or `Err` with what was
/// seen instead, while it does not.
pub trait Attempt<T> {
    fn outcome(self) -> Result<T, String>;
}

impl<T> Attempt<T> for Option<T> {
    fn outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_owned())
    }
}

impl<T> Attempt<T> for Result<T, String> {
    fn outcome(self) -> Result<T, String> {
        self
    }
}

/// Looks at `check` until it holds, failing the test after `seconds` with the last thing seen.
pub async fn eventually<T, A, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    A: Attempt<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
{
    let until = Instant::now() + Duration::from_secs(seconds);
    loop {
        match check().await.outcome() {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < until,
                "not within {seconds} s: {what}; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
