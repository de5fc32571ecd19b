//! The cart's use cases — what `http/` and `events.rs` call: check the cart out ([`checkout`]).
//! Each reads and writes the cart through `store.rs` (whose `CartDoc` keeps the cart's own rules:
//! what a hold is, what goes back) and reaches orders through `orders.rs`; an HTTP handler only
//! extracts, calls one of these and shapes the answer (docs/architecture.md §2).

pub mod checkout;
