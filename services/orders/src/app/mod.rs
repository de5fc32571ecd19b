//! The orders use cases — what `http/` and `events.rs` call: place or quote an order
//! ([`placing`]), hold one for payment ([`paying`]), read, follow and cancel one ([`following`]),
//! and move one a saga step ([`saga`]). Each reads and writes through `store/` and decides through
//! `domain/`; an HTTP handler only extracts, calls one of these and shapes the answer
//! (docs/architecture.md §2).

pub mod following;
pub mod paying;
pub mod placing;
pub mod saga;
