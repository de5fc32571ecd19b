//! auth's API against the real backends `cargo xtask test` starts: every test spawns the real
//! router on a random port with its own database, topic prefix and Redis namespace.

mod helpers;

mod accounts;
mod admin;
mod jwks;
mod outbox;
mod profile;
mod tokens;
