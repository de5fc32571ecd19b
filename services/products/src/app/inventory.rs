//! The inventory side of the checkout saga, one use case per event (`events.rs` decodes them):
//! `order.created` holds every line or none (`inventory.reserved` / `inventory.rejected`),
//! `order.cancelled` makes the held stock available again, `order.completed` sells it. What each
//! does to an order's reservation is `domain/reservation.rs`'s; the store reads and writes it in
//! the consumer's transaction — one event at a time, or the events waiting in a lane together.

use mongodb::ClientSession;
use storefront_kit::retry_transient;

use crate::{
    domain::{Ending, InventoryOp},
    store::{Reservation, Store, StoreError},
};

/// Applies one saga event inside the caller's transaction.
pub async fn apply_in(
    store: &Store,
    session: &mut ClientSession,
    op: &InventoryOp,
) -> Result<(), StoreError> {
    match op {
        InventoryOp::Reserve { order_id, lines } => {
            match store.reserve_in(session, *order_id, lines).await? {
                Reservation::Reserved => tracing::info!(%order_id, "stock reserved"),
                Reservation::Rejected(short) => {
                    tracing::info!(%order_id, ?short, "stock short; order rejected")
                }
                Reservation::Unchanged => {}
            }
        }
        InventoryOp::Release { order_id } => {
            if store.end_in(session, *order_id, Ending::Cancelled).await? {
                tracing::info!(%order_id, "reservation released");
            }
        }
        InventoryOp::Sell { order_id } => {
            if store.end_in(session, *order_id, Ending::Completed).await? {
                tracing::info!(%order_id, "reservation sold");
            }
        }
    }
    Ok(())
}

/// Applies `ops` in order inside the caller's transaction, as [`apply_in`] one after another
/// would, each reservation and product read and written once (`store/batch.rs`).
pub async fn apply_all_in(
    store: &Store,
    session: &mut ClientSession,
    ops: &[InventoryOp],
) -> Result<(), StoreError> {
    store.apply_all_in(session, ops).await
}

/// [`apply_in`] in a transaction of its own; runs again when a product changed under it.
pub async fn apply(store: &Store, op: &InventoryOp) -> Result<(), StoreError> {
    retry_transient!(
        async {
            let mut session = store.begin().await?;
            apply_in(store, &mut session, op).await?;
            store.commit(session).await
        }
        .await
    )
}
