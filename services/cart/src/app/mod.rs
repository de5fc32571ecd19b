//! The cart's use cases — what `http/` and `events.rs` call: check the cart out ([`checkout`]).
//! Each decides through `domain/cart.rs` (a hold, what goes back), reads and writes the cart
//! through `store.rs` and reaches orders through `orders.rs`; the checkout's handler only
//! extracts, calls one of these and shapes the answer (docs/architecture.md §2).

pub mod checkout;
