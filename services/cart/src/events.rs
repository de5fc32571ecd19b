//! What cart consumes: the product replica (`product.*`, `stock.changed`) and `payment.succeeded`,
//! which takes the paid lines out of the customer's cart.

use mongodb::ClientSession;
use storefront_events::{Envelope, Event, Topic, payments::PaymentSucceeded};
use storefront_kit::{
    kafka::{ConsumerSettings, EventHandler, HandlerError},
    replica::PRODUCT_EVENTS,
};

use crate::store::Store;

pub struct Carts {
    pub store: Store,
}

pub fn settings(topic_prefix: &str) -> ConsumerSettings {
    ConsumerSettings::new(
        &format!("{topic_prefix}.cart"),
        vec![
            Topic::Products.name(topic_prefix),
            Topic::Payments.name(topic_prefix),
        ],
    )
}

/// What the cart consumer acts on; the rest of its topics is acknowledged unread.
const EVENT_TYPES: [&str; 5] = [
    PRODUCT_EVENTS[0],
    PRODUCT_EVENTS[1],
    PRODUCT_EVENTS[2],
    PRODUCT_EVENTS[3],
    PaymentSucceeded::TYPE,
];

impl EventHandler for Carts {
    fn event_types(&self) -> &[&'static str] {
        &EVENT_TYPES
    }

    /// The product replica's writes are version-guarded: no transaction needed.
    async fn apply_idempotent(&self, event: &Envelope) -> Result<bool, HandlerError> {
        self.store.products.apply_idempotent(event).await
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        if self.store.products.apply(session, event).await? {
            return Ok(());
        }
        if event.is::<PaymentSucceeded>() {
            let paid = event
                .decode::<PaymentSucceeded>()
                .map_err(|e| HandlerError::Failed(format!("undecodable event: {e}")))?
                .data;
            if self
                .store
                .paid_in(session, paid.user_id, paid.order_id)
                .await?
            {
                tracing::info!(order_id = %paid.order_id, "paid lines left the cart");
            }
        }
        Ok(())
    }
}
