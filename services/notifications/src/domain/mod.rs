//! The notifications domain: what each event says to whom. No I/O.

mod notice;

pub use notice::{Draft, EVERYONE, Kind, order_notice, payment_notice, product_notice};
