//! The orders API and the saga between orders and products, against the real backends
//! `cargo xtask test` starts: each test runs both services (their HTTP apps, outbox relays and
//! consumers) on one fresh topic prefix, with tokens signed by a key both are given.

mod helpers;

mod batches;
mod checkout;
mod paying;
mod placing;
mod pricing;
mod stored;
