//! What cart consumes: the product replica (`product.*`, `stock.changed`) and the orders its
//! checkouts placed — `order.created` tells a hold its order (by the checkout's key),
//! `order.completed` ends it (the lines are bought), `order.cancelled` puts its lines back into
//! the cart. See `crate::store` and docs/api/cart.md.

use mongodb::ClientSession;
use storefront_events::{
    Envelope, Event, OrderEvent, Topic, TopicEvent,
    orders::{OrderCancelled, OrderCompleted, OrderCreated},
};
use storefront_kit::{
    kafka::{ConsumerSettings, EventHandler, HandlerError},
    replica::PRODUCT_EVENTS,
};

use crate::{
    app::checkout,
    domain::OrderEnd,
    store::{Store, WriteError},
};

pub struct Carts {
    pub store: Store,
}

pub fn settings(topic_prefix: &str) -> ConsumerSettings {
    ConsumerSettings::new(
        &format!("{topic_prefix}.cart"),
        vec![
            Topic::Products.name(topic_prefix),
            Topic::Orders.name(topic_prefix),
        ],
    )
}

/// What the cart consumer acts on; the rest of its topics is acknowledged unread.
const EVENT_TYPES: [&str; 7] = [
    PRODUCT_EVENTS[0],
    PRODUCT_EVENTS[1],
    PRODUCT_EVENTS[2],
    PRODUCT_EVENTS[3],
    OrderCreated::TYPE,
    OrderCompleted::TYPE,
    OrderCancelled::TYPE,
];

fn failed(e: WriteError) -> HandlerError {
    match e {
        WriteError::Mongo(e) => HandlerError::Mongo(e),
        WriteError::Raced => HandlerError::Conflict(e.to_string()),
    }
}

impl EventHandler for Carts {
    fn event_types(&self) -> &[&'static str] {
        &EVENT_TYPES
    }

    /// Every write cart makes for an event is guarded by itself, so none needs a transaction or
    /// a processed-event record: the replica's by the event's version, a hold's by the hold it
    /// matches (a redelivery finds it gone, or already told its order).
    async fn apply_idempotent(&self, event: &Envelope) -> Result<bool, HandlerError> {
        if self.store.products.apply_idempotent(event).await? {
            return Ok(true);
        }
        let Some(order) = OrderEvent::decode(event).map_err(HandlerError::malformed)? else {
            return Ok(false);
        };
        match order {
            OrderEvent::Created(created) => {
                if let Some(key) = &created.idempotency_key {
                    checkout::order_placed(&self.store, created.user_id, key, created.order_id)
                        .await
                        .map_err(failed)?;
                }
            }
            OrderEvent::Completed(done) => {
                checkout::order_ended(
                    &self.store,
                    done.user_id,
                    done.order_id,
                    OrderEnd::Completed,
                )
                .await
                .map_err(failed)?;
            }
            OrderEvent::Cancelled(cancelled) => {
                let (user, order) = (cancelled.user_id, cancelled.order_id);
                checkout::order_ended(&self.store, user, order, OrderEnd::Cancelled)
                    .await
                    .map_err(failed)?;
            }
            // The hold lasts while the order is open; a refund is the order's, after it ended.
            OrderEvent::AwaitingPayment(_) | OrderEvent::RefundDue(_) | OrderEvent::Refunded(_) => {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Not reached: every type in `EVENT_TYPES` is applied by `apply_idempotent`.
    async fn handle(
        &self,
        event: &Envelope,
        _session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        Err(HandlerError::Failed(
            format!("cart has no transactional handler for {}", event.event_type).into(),
        ))
    }
}
