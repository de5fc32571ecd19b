//! What orders consumes: its product replica (`product.*`, `stock.changed`, kept by the kit's
//! `replica::Products`), inventory's answers
//! (saga step 3) and payments (step 5). Each handler runs in the consumer's transaction with the
//! processed-event record; the order's state machine makes a replayed answer a no-op.

use mongodb::ClientSession;
use storefront_events::{
    Envelope, Event, Topic,
    payments::PaymentSucceeded,
    products::{InventoryRejected, InventoryReserved},
};
use storefront_kit::{
    kafka::{ConsumerSettings, EventHandler, HandlerError},
    replica::PRODUCT_EVENTS,
};
use uuid::Uuid;

use crate::store::{Step, Store, StoreError};

pub struct Saga {
    pub store: Store,
}

pub fn settings(topic_prefix: &str) -> ConsumerSettings {
    ConsumerSettings::new(
        &format!("{topic_prefix}.orders"),
        vec![
            Topic::Products.name(topic_prefix),
            Topic::Payments.name(topic_prefix),
        ],
    )
}

fn malformed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Failed(format!("undecodable event: {e}"))
}

impl Saga {
    /// Moves an order; a step its state machine does not have (a replay, or an order the
    /// customer cancelled first) changes nothing.
    async fn step(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
        step: Step,
    ) -> Result<(), HandlerError> {
        match self.store.advance_in(session, order_id, step).await {
            Ok(order) => {
                tracing::info!(%order_id, state = %order.state, "order moved");
                Ok(())
            }
            Err(StoreError::Transition(t)) => {
                tracing::info!(%order_id, "ignored: {t}");
                Ok(())
            }
            Err(StoreError::NotFound) => {
                tracing::warn!(%order_id, "an answer for an order this shop does not have");
                Ok(())
            }
            Err(StoreError::Mongo(e)) => Err(HandlerError::Mongo(e)),
            Err(StoreError::Raced) => Err(HandlerError::Conflict("order changed".into())),
            Err(other) => Err(HandlerError::Failed(other.to_string())),
        }
    }
}

/// What the saga consumer acts on; the rest of its topics is acknowledged unread.
const EVENT_TYPES: [&str; 7] = [
    PRODUCT_EVENTS[0],
    PRODUCT_EVENTS[1],
    PRODUCT_EVENTS[2],
    PRODUCT_EVENTS[3],
    InventoryReserved::TYPE,
    InventoryRejected::TYPE,
    PaymentSucceeded::TYPE,
];

impl EventHandler for Saga {
    fn event_types(&self) -> &[&'static str] {
        &EVENT_TYPES
    }

    /// The product replica's writes are version-guarded: no transaction needed.
    async fn apply_idempotent(&self, event: &Envelope) -> Result<bool, HandlerError> {
        self.store.product_replica().apply_idempotent(event).await
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        if self.store.product_replica().apply(session, event).await? {
            return Ok(());
        }
        if event.is::<InventoryReserved>() {
            let e = event.decode::<InventoryReserved>().map_err(malformed)?;
            self.step(session, e.data.order_id, Step::Reserved).await
        } else if event.is::<InventoryRejected>() {
            let e = event.decode::<InventoryRejected>().map_err(malformed)?;
            let reason = e.data.reason.clone();
            self.step(session, e.data.order_id, Step::Cancelled { reason })
                .await
        } else if event.is::<PaymentSucceeded>() {
            let e = event.decode::<PaymentSucceeded>().map_err(malformed)?;
            self.step(session, e.data.order_id, Step::Completed).await
        } else {
            Ok(())
        }
    }

    fn committed(&self, _event: &Envelope) {
        self.store.outbox().committed();
    }
}
