//! What payments consumes: `order.*`, into its order replica. An order cancelled after its payment
//! went through (it expired as the customer paid) is refunded here.

use mongodb::ClientSession;
use storefront_events::{
    Envelope, Money, Topic,
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

fn replica(order_id: Uuid, user_id: Uuid, total: Money, state: &str, version: u64) -> OrderReplica {
    OrderReplica {
        id: order_id.to_string(),
        user_id: user_id.to_string(),
        total,
        state: state.to_owned(),
        version: version as i64,
    }
}

impl EventHandler for Orders {
    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        let (next, cancelled) = if event.is::<OrderCreated>() {
            let e = event.decode::<OrderCreated>().map_err(malformed)?;
            let d = e.data;
            (
                replica(d.order_id, d.user_id, d.total, "pending", e.version),
                false,
            )
        } else if event.is::<OrderAwaitingPayment>() {
            let e = event.decode::<OrderAwaitingPayment>().map_err(malformed)?;
            let d = e.data;
            (
                replica(
                    d.order_id,
                    d.user_id,
                    d.total,
                    "awaiting_payment",
                    e.version,
                ),
                false,
            )
        } else if event.is::<OrderCompleted>() {
            let e = event.decode::<OrderCompleted>().map_err(malformed)?;
            let d = e.data;
            (
                replica(d.order_id, d.user_id, d.total, "completed", e.version),
                false,
            )
        } else if event.is::<OrderCancelled>() {
            let e = event.decode::<OrderCancelled>().map_err(malformed)?;
            let d = e.data;
            // The total is not in the event; the replica keeps the one it has.
            let total = Money {
                amount: 0,
                currency: String::new(),
            };
            (
                replica(d.order_id, d.user_id, total, "cancelled", e.version),
                true,
            )
        } else {
            return Ok(());
        };
        let order_id: Uuid = next.id.parse().unwrap_or_default();
        let mut next = next;
        if cancelled
            && let Some(current) = self
                .store
                .order(order_id)
                .await
                .map_err(|e| HandlerError::Failed(e.to_string()))?
        {
            next.total = current.total;
        }
        let applied = self
            .store
            .apply_order(session, next)
            .await
            .map_err(HandlerError::Failed)?;
        if applied && cancelled {
            self.refund_if_paid(session, order_id).await?;
        }
        Ok(())
    }

    fn committed(&self) {
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
