//! The shop end to end: `cargo xtask test` starts every service, the demo catalog and the gateway
//! on the test backends, and these tests go through the gateway as visitors do — page by page over
//! HTTP (`pages`, `admin`), and in headless Chromium (`browser`).

mod admin;
mod browser;
mod gateway;
mod helpers;
mod pages;
