//! What orders consumes: its product replica (`product.*`, `stock.changed`, kept by the kit's
//! `replica::Products`), inventory's answers (saga step 3) and payments' reports (step 5): money
//! received (the order completes, or a refund falls due), an attempt that failed (the payment hold
//! ends), a refund done. Each handler runs in the consumer's transaction with the processed-event
//! record; the order's state machine makes a replayed answer a no-op.

use mongodb::ClientSession;
use storefront_events::{
    Envelope, Event, Topic,
    payments::{PaymentFailed, PaymentRefunded, PaymentSucceeded},
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

fn failed(e: StoreError) -> HandlerError {
    match e {
        StoreError::Mongo(e) => HandlerError::Mongo(e),
        StoreError::Raced => HandlerError::Conflict("order changed".into()),
        other => HandlerError::Failed(other.to_string()),
    }
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
            // Inventory never rejects an order payments holds (it is past pending); if a
            // cancel meets a hold here anyway, run it again once the hold ended.
            Err(StoreError::PaymentInProgress) => {
                Err(HandlerError::Failed("the order is held for payment".into()))
            }
            Err(StoreError::NotFound) => {
                tracing::warn!(%order_id, "an answer for an order this shop does not have");
                Ok(())
            }
            Err(other) => Err(failed(other)),
        }
    }
}

/// What the saga consumer acts on; the rest of its topics is acknowledged unread.
const EVENT_TYPES: [&str; 9] = [
    PRODUCT_EVENTS[0],
    PRODUCT_EVENTS[1],
    PRODUCT_EVENTS[2],
    PRODUCT_EVENTS[3],
    InventoryReserved::TYPE,
    InventoryRejected::TYPE,
    PaymentSucceeded::TYPE,
    PaymentFailed::TYPE,
    PaymentRefunded::TYPE,
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
            let e = event.decode::<PaymentSucceeded>().map_err(malformed)?.data;
            let step = Step::Paid {
                payment_intent_id: e.payment_intent_id,
                amount: e.amount,
            };
            self.step(session, e.order_id, step).await
        } else if event.is::<PaymentFailed>() {
            let e = event.decode::<PaymentFailed>().map_err(malformed)?.data;
            if self
                .store
                .release_hold(session, e.order_id)
                .await
                .map_err(failed)?
            {
                tracing::info!(order_id = %e.order_id, "payment attempt failed; hold released");
            }
            Ok(())
        } else if event.is::<PaymentRefunded>() {
            let e = event.decode::<PaymentRefunded>().map_err(malformed)?.data;
            self.step(session, e.order_id, Step::Refunded).await
        } else {
            Ok(())
        }
    }

    fn committed(&self, _event: &Envelope) {
        self.store.outbox().committed();
    }
}
