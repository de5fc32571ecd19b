//! What payments consumes: `order.refund_due` — orders, the owner of the order's fate, found that
//! money arrived for an order that had ended unpaid. The refund is stored in the consumer's
//! transaction and the refund task (`crate::refunds`) gives the money back. payments decides no
//! refund by itself: every other order event is none of its business.

use mongodb::ClientSession;
use storefront_events::{Envelope, Event, OrderEvent, Topic, TopicEvent, orders::OrderRefundDue};
use storefront_kit::kafka::{ConsumerSettings, EventHandler, HandlerError};

use crate::{
    refunds::Wake,
    store::{RefundRequest, Store, StoreError},
};

pub struct RefundRequests {
    pub store: Store,
    pub wake: Wake,
}

pub fn settings(topic_prefix: &str) -> ConsumerSettings {
    ConsumerSettings::new(
        &format!("{topic_prefix}.payments"),
        vec![Topic::Orders.name(topic_prefix)],
    )
}

impl EventHandler for RefundRequests {
    fn event_types(&self) -> &[&'static str] {
        &[OrderRefundDue::TYPE]
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        let due = match OrderEvent::decode(event).map_err(HandlerError::malformed)? {
            Some(OrderEvent::RefundDue(due)) => due,
            // orders decides the order's fate; payments only gives back what it is told to.
            Some(
                OrderEvent::Created(_)
                | OrderEvent::AwaitingPayment(_)
                | OrderEvent::Completed(_)
                | OrderEvent::Cancelled(_)
                | OrderEvent::Refunded(_),
            )
            | None => return Ok(()),
        };
        let request = RefundRequest {
            order_id: due.order_id,
            user_id: due.user_id,
            payment_intent_id: due.payment_intent_id,
            amount: due.amount,
            reason: due.reason,
        };
        let stored = self
            .store
            .refund_due_in(session, &request)
            .await
            .map_err(|e| match e {
                StoreError::Mongo(e) => HandlerError::Mongo(e),
                other => HandlerError::Failed(other.into()),
            })?;
        if stored {
            tracing::warn!(order_id = %request.order_id, reason = %request.reason, "refund due");
            self.wake.stored();
        }
        Ok(())
    }

    fn committed(&self, _event: &Envelope) {
        self.wake.committed();
    }
}
