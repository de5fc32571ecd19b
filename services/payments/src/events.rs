//! What payments consumes: `order.*`, into its order replica. An order cancelled after its payment
//! went through (it expired as the customer paid) is refunded here.

use mongodb::ClientSession;
use storefront_events::{
    Envelope, Event, Money, Topic,
    orders::{OrderAwaitingPayment, OrderCancelled, OrderCompleted, OrderCreated},
};
use storefront_kit::kafka::{ConsumerSettings, EventHandler, HandlerError};
use uuid::Uuid;

use crate::{
    gateway::Gateway,
    store::{OrderReplica, Store},
};

pub struct Orders {
    pub store: Store,
    pub gateway: Gateway,
}

pub fn settings(topic_prefix: &str) -> ConsumerSettings {
    ConsumerSettings::new(
        &format!("{topic_prefix}.payments"),
        vec![Topic::Orders.name(topic_prefix)],
    )
}

fn malformed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Failed(format!("undecodable event: {e}"))
}

/// What an order event says of the order.
struct Next {
    order_id: Uuid,
    user_id: Uuid,
    total: Option<Money>,
    state: &'static str,
}

fn replica(order_id: Uuid, user_id: Uuid, total: Option<Money>, state: &'static str) -> Next {
    Next {
        order_id,
        user_id,
        total,
        state,
    }
}

impl EventHandler for Orders {
    fn event_types(&self) -> &[&'static str] {
        &[
            OrderCreated::TYPE,
            OrderAwaitingPayment::TYPE,
            OrderCompleted::TYPE,
            OrderCancelled::TYPE,
        ]
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        let (next, cancelled) = if event.is::<OrderCreated>() {
            let d = event.decode::<OrderCreated>().map_err(malformed)?.data;
            (
                replica(d.order_id, d.user_id, Some(d.total), "pending"),
                false,
            )
        } else if event.is::<OrderAwaitingPayment>() {
            let d = event
                .decode::<OrderAwaitingPayment>()
                .map_err(malformed)?
                .data;
            (
                replica(d.order_id, d.user_id, Some(d.total), "awaiting_payment"),
                false,
            )
        } else if event.is::<OrderCompleted>() {
            let d = event.decode::<OrderCompleted>().map_err(malformed)?.data;
            (
                replica(d.order_id, d.user_id, Some(d.total), "completed"),
                false,
            )
        } else if event.is::<OrderCancelled>() {
            let d = event.decode::<OrderCancelled>().map_err(malformed)?.data;
            // The event has no total; the replica keeps the one it has.
            (replica(d.order_id, d.user_id, None, "cancelled"), true)
        } else {
            return Ok(());
        };
        let order_id = next.order_id;
        let version = event.version as i64;
        let applied = self
            .store
            .apply_order(session, &order_id.to_string(), version, |current| {
                let total = next.total.or(current.map(|c| c.total))?;
                Some(OrderReplica {
                    id: order_id.to_string(),
                    user_id: next.user_id.to_string(),
                    total,
                    state: next.state.to_owned(),
                    version,
                })
            })
            .await?;
        if applied && cancelled {
            self.refund_if_paid(session, order_id).await?;
        }
        Ok(())
    }

    fn committed(&self, _event: &Envelope) {
        self.store.outbox().committed();
    }
}

impl Orders {
    /// Saga compensation: the order ended unpaid on our side, but its payment went through.
    async fn refund_if_paid(
        &self,
        session: &mut ClientSession,
        order_id: Uuid,
    ) -> Result<(), HandlerError> {
        let failed = |e: crate::store::StoreError| HandlerError::Failed(e.to_string());
        let Some(payment) = self
            .store
            .succeeded_payment(session, order_id)
            .await
            .map_err(failed)?
        else {
            return Ok(());
        };
        let intent = payment.payment_intent_id.clone().unwrap_or_default();
        self.gateway
            .refund(order_id, &intent)
            .await
            .map_err(|e| HandlerError::Failed(e.to_string()))?;
        self.store
            .refunded_in(session, order_id)
            .await
            .map_err(failed)?;
        tracing::warn!(%order_id, "refunded a payment for an order that was cancelled");
        Ok(())
    }
}
