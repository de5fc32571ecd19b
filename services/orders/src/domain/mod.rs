//! The orders domain: the state machine and order lines. No I/O.

mod state;

pub use state::{OrderState, Transition};
pub use storefront_kit::validate::Fields;

/// Most items of one product in one order.
pub const MAX_QUANTITY: i64 = 100;
/// Most lines in one order.
pub const MAX_LINES: usize = 50;
