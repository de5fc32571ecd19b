//! What the operator's test files share. Not every file uses every helper.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

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
