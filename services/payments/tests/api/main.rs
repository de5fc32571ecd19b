//! The payments API against the real backends and the Stripe stand-in (localstripe) that
//! `cargo xtask test` starts. Orders are fed to payments' replica as the orders service publishes
//! them (the contract in `storefront-events`).

mod helpers;

mod paying;
mod webhooks;
