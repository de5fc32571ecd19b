//! The cart domain: a cart, the lines its checkouts hold and the rules that move them. No I/O.

mod cart;

pub use cart::{
    CartDoc, Checkout, EmptyCart, Item, MAX_ITEMS, MAX_QUANTITY, OrderEnd, UNPLACED_HOLD_MINUTES,
};
