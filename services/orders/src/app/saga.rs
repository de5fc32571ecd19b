//! Moving orders by the saga's answers — inventory's (stock held or refused) and payments'
//! (money received, an attempt failed, a refund done) — in the consumer's transaction. The
//! order's state machine (`domain/state.rs`) makes a replayed answer change nothing.

use mongodb::ClientSession;
use storefront_events::OrderId;

use crate::store::{OrderDoc, Step, Store, StoreError};

/// What an event does to an order (`events.rs` decodes every event of its topics into one).
pub enum Action {
    /// Moves the order a step.
    Step(OrderId, Step),
    /// A failed payment attempt: the order's payment hold ends; the order stays as it is.
    EndHold(OrderId),
    Nothing,
}

/// The order an answer moved (to tell its waiters once committed), or `None`: nothing moved.
pub type Moved = Option<OrderDoc>;

/// Acts on one answer.
pub async fn apply(
    store: &Store,
    session: &mut ClientSession,
    action: Action,
) -> Result<Moved, StoreError> {
    match action {
        Action::Step(order_id, step) => {
            settled(order_id, store.advance_in(session, order_id, step).await)
        }
        Action::EndHold(order_id) => {
            if store.release_hold(session, order_id).await? {
                tracing::info!(%order_id, "payment attempt failed; hold released");
            }
            Ok(None)
        }
        Action::Nothing => Ok(None),
    }
}

/// Moves the orders of several answers together (a lane that is behind), each order read and
/// written once; what each answer came to, in their order.
pub async fn apply_steps(
    store: &Store,
    session: &mut ClientSession,
    steps: Vec<(OrderId, Step)>,
) -> Result<Vec<Result<Moved, StoreError>>, StoreError> {
    let orders: Vec<OrderId> = steps.iter().map(|(id, _)| *id).collect();
    let answers = store.advance_all_in(session, steps).await?;
    Ok(orders
        .into_iter()
        .zip(answers)
        .map(|(order_id, moved)| settled(order_id, moved))
        .collect())
}

/// A step as the saga takes it: one the order's state machine does not have (a replay, or an
/// order the customer cancelled first) and an answer for an order this shop does not have change
/// nothing; any other failure is the consumer's to retry.
fn settled(order_id: OrderId, moved: Result<OrderDoc, StoreError>) -> Result<Moved, StoreError> {
    match moved {
        Ok(order) => {
            tracing::info!(%order_id, state = %order.state, "order moved");
            Ok(Some(order))
        }
        Err(StoreError::Transition(t)) => {
            tracing::info!(%order_id, "ignored: {t}");
            Ok(None)
        }
        Err(StoreError::NotFound) => {
            tracing::warn!(%order_id, "an answer for an order this shop does not have");
            Ok(None)
        }
        Err(other) => Err(other),
    }
}
