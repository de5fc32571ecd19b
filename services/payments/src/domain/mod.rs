//! The payments domain: where a payment is and the moves between its statuses. No I/O.

mod status;

pub use status::{PaymentStatus, Transition};
