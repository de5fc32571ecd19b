//! The orders domain: the state machine and order lines. No I/O.

mod state;

pub use state::{Lifecycle, OrderState, Settlement, Transition};
pub use storefront_kit::validate::Fields;

/// Most items of one product in one order.
pub const MAX_QUANTITY: i64 = 100;
/// Most lines in one order.
pub const MAX_LINES: usize = 50;
/// The most one payment can take, in minor units: Stripe's ceiling (99,999,999, i.e. 999,999.99
/// in a two-decimal currency). A larger order is refused when it is placed, before anyone pays.
pub const MAX_ORDER_TOTAL: i64 = 99_999_999;
