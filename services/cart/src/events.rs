//! What cart consumes: the product replica (`product.*`, `stock.changed`) and `payment.succeeded`,
//! which takes the paid lines out of the customer's cart.

use mongodb::ClientSession;
use storefront_events::{Envelope, Topic, payments::PaymentSucceeded};
use storefront_kit::kafka::{ConsumerSettings, EventHandler, HandlerError};

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

impl EventHandler for Carts {
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
