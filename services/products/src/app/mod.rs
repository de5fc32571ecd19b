//! The products use cases — what `http/` and `events.rs` call: the inventory's side of the
//! checkout saga ([`inventory`]: hold an order's stock, release it, sell it). Each reads and
//! writes through `store/` and decides through `domain/` (an order's reservation is
//! `domain/reservation.rs`); the catalog's and images' handlers call the store directly
//! (docs/architecture.md §2).

pub mod inventory;
