//! What orders consumes: its product replica (`product.*` without stock, kept by the kit's
//! `replica::Products`), inventory's answers (saga step 3) and payments' reports (step 5): money
//! received (the order completes, or a refund falls due), an attempt that failed (the payment hold
//! ends), a refund done. Each event is decoded into an [`Action`] and handed to `app::saga` in the
//! consumer's transaction; the order's state machine makes a replayed answer a no-op, so only a
//! failed attempt keeps a processed-event record.

use mongodb::ClientSession;
use storefront_events::{
    Envelope, Event, OrderId, PaymentEvent, ProductEvent, Topic, TopicEvent,
    payments::{PaymentFailed, PaymentRefunded, PaymentSucceeded},
    products::{InventoryRejected, InventoryReserved},
};
use storefront_kit::{
    kafka::{ConsumerSettings, EventHandler, HandlerError, UntilCommitted},
    replica::CATALOG_EVENTS,
};

use crate::{
    app::saga::{self, Action, Moved},
    store::{Step, Store, StoreError},
};

pub struct Saga {
    store: Store,
    /// The order each event in flight moved, and its new version: waiters are told after the
    /// consumer's transaction committed.
    moved: UntilCommitted<(OrderId, i64)>,
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
        // Inventory never rejects an order payments holds (it is past pending); if a cancel
        // meets a hold here anyway, run it again once the hold ended.
        StoreError::PaymentInProgress => {
            HandlerError::Failed("the order is held for payment".into())
        }
        other => HandlerError::Failed(other.into()),
    }
}

impl Saga {
    pub fn new(store: Store) -> Self {
        Saga {
            store,
            moved: UntilCommitted::default(),
        }
    }

    /// Keeps what `event` moved, to tell the order's waiters once it is committed.
    fn answered(
        &self,
        event: &Envelope,
        moved: Result<Moved, StoreError>,
    ) -> Result<(), HandlerError> {
        if let Some(order) = moved.map_err(failed)? {
            self.moved.keep(event, (order.id, order.version));
        }
        Ok(())
    }
}

/// What an event does to an order. Every event of both topics is named: one added to either is a
/// decision to make here.
fn action_of(event: &Envelope) -> Result<Action, HandlerError> {
    if let Some(product) = ProductEvent::decode(event).map_err(HandlerError::malformed)? {
        return Ok(match product {
            ProductEvent::InventoryReserved(e) => Action::Step(e.order_id, Step::Reserved),
            ProductEvent::InventoryRejected(e) => {
                Action::Step(e.order_id, Step::Cancelled { reason: e.reason })
            }
            // The catalog is the replica's; orders never reads stock.
            ProductEvent::Created(_)
            | ProductEvent::Updated(_)
            | ProductEvent::Deleted(_)
            | ProductEvent::StockChanged(_) => Action::Nothing,
        });
    }
    Ok(
        match PaymentEvent::decode(event).map_err(HandlerError::malformed)? {
            Some(PaymentEvent::Succeeded(e)) => Action::Step(
                e.order_id,
                Step::Paid {
                    payment_intent_id: e.payment_intent_id,
                    amount: e.amount,
                },
            ),
            Some(PaymentEvent::Refunded(e)) => Action::Step(e.order_id, Step::Refunded),
            Some(PaymentEvent::Failed(e)) => Action::EndHold(e.order_id),
            None => Action::Nothing,
        },
    )
}

/// What the saga consumer acts on; the rest of its topics is acknowledged unread.
/// Product events without `stock.changed`: orders never reads its replica's stock.
const EVENT_TYPES: [&str; 8] = [
    CATALOG_EVENTS[0],
    CATALOG_EVENTS[1],
    CATALOG_EVENTS[2],
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

    /// The order's state machine guards every step: a redelivered answer meets an order past
    /// it and changes nothing (a payment already recorded, a refund already done). Only a failed
    /// attempt keeps the processed-event record: ending a hold is not such a step, and a late
    /// redelivery could end the hold of the customer's next attempt.
    fn records_processed(&self, event: &Envelope) -> bool {
        event.is::<PaymentFailed>()
    }

    /// Steps of orders (not a failed attempt, which keeps its processed-event record): a lane
    /// that is behind moves the orders of the steps waiting in it together
    /// ([`Store::advance_all_in`]).
    fn batchable(&self, event: &Envelope) -> bool {
        event.is::<InventoryReserved>()
            || event.is::<InventoryRejected>()
            || event.is::<PaymentSucceeded>()
            || event.is::<PaymentRefunded>()
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        self.moved.begin(event);
        let moved = saga::apply(&self.store, session, action_of(event)?).await;
        self.answered(event, moved)
    }

    async fn handle_all(
        &self,
        events: &[&Envelope],
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        let mut steps = Vec::with_capacity(events.len());
        for event in events {
            self.moved.begin(event);
            let Action::Step(order_id, step) = action_of(event)? else {
                return Err(HandlerError::Failed("not a step of an order".into()));
            };
            steps.push((order_id, step));
        }
        let answers = saga::apply_steps(&self.store, session, steps)
            .await
            .map_err(failed)?;
        for (event, moved) in events.iter().zip(answers) {
            self.answered(event, moved)?;
        }
        Ok(())
    }

    fn committed(&self, event: &Envelope) {
        if let Some((order_id, version)) = self.moved.take(event) {
            self.store.changes().changed(order_id, version);
        }
    }
}
