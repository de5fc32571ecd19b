//! The payments use cases — what `http/` calls: charge an order and record what Stripe's
//! webhook says ([`charging`]). Each reads and
//! writes through `store/`, decides through `domain/` and reaches orders and Stripe through
//! `orders.rs` and `gateway.rs`; an HTTP handler only extracts, calls one of these and shapes the
//! answer (docs/architecture.md §2). The refund task (`refunds.rs`) and the consumer that wakes
//! it (`events.rs`) are the other way money moves.

pub mod charging;
