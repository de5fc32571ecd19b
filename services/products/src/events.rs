//! The inventory side of the checkout saga: what products consumes, decoded into an
//! [`InventoryOp`] and handed to `app::inventory`.
//!
//! - `order.created` → hold every line or none → `inventory.reserved` / `inventory.rejected`;
//! - `order.cancelled` → the held stock is available again;
//! - `order.completed` → the held stock is sold. orders decides whether an order's money is kept
//!   (docs/saga.md, "One owner"), so stock follows orders' verdict, not payments' report: a payment
//!   that arrives for a cancelled order is refunded, and its stock stays released.
//!
//! It also counts `product.viewed` (from `{prefix}.product-views`) into the views counters
//! (`crate::analytics`), with the runner's processed-event record: a count has no state to guard it.
//!
//! Each runs inside the consumer runner's transaction. The reservation record per order is what
//! makes a redelivered event change nothing (so the runner keeps no processed-event record for
//! them), and keeps the handlers safe against replays with new ids and against an order's events
//! arriving out of order too.

use mongodb::ClientSession;
use storefront_events::{
    Envelope, Event, OrderEvent, ProductViewEvent, Topic, TopicEvent,
    orders::{OrderCancelled, OrderCompleted, OrderCreated},
    products::ProductViewed,
};
use storefront_kit::kafka::{ConsumerSettings, EventHandler, HandlerError};

use crate::{
    analytics::Analytics,
    app::inventory,
    domain::{InventoryOp, merge_lines},
    store::{Store, StoreError},
};

pub struct Inventory {
    pub store: Store,
    pub analytics: Analytics,
}

/// The group and topics of the inventory consumer for one shop.
pub fn settings(topic_prefix: &str) -> ConsumerSettings {
    ConsumerSettings::new(
        &format!("{topic_prefix}.products"),
        vec![
            Topic::Orders.name(topic_prefix),
            Topic::ProductViews.name(topic_prefix),
        ],
    )
    // Reservations, sales and releases of different orders meet on the same product documents
    // (a catalog has a few best sellers): in turn, rather than in lanes that abort each other.
    .max_lanes(1)
}

fn failed(e: StoreError) -> HandlerError {
    match e {
        StoreError::Mongo(e) => HandlerError::Mongo(e),
        StoreError::Raced => HandlerError::Conflict(StoreError::Raced.to_string()),
        other => HandlerError::Failed(other.into()),
    }
}

/// The saga event as an inventory operation; `None` for any other event.
fn op_of(event: &Envelope) -> Result<Option<InventoryOp>, HandlerError> {
    let Some(order) = OrderEvent::decode(event).map_err(HandlerError::malformed)? else {
        return Ok(None);
    };
    Ok(match order {
        OrderEvent::Created(order) => {
            // An order without valid lines (none, or a quantity below one) is rejected as such.
            let lines = merge_lines(order.lines.iter().map(|l| (l.product_id, l.quantity)))
                .unwrap_or_default();
            Some(InventoryOp::Reserve {
                order_id: order.order_id,
                lines,
            })
        }
        OrderEvent::Cancelled(e) => Some(InventoryOp::Release {
            order_id: e.order_id,
        }),
        OrderEvent::Completed(e) => Some(InventoryOp::Sell {
            order_id: e.order_id,
        }),
        // Stock is held from `order.created`; the money's fate is orders' and payments'.
        OrderEvent::AwaitingPayment(_) | OrderEvent::RefundDue(_) | OrderEvent::Refunded(_) => None,
    })
}

impl EventHandler for Inventory {
    fn event_types(&self) -> &[&'static str] {
        &[
            OrderCreated::TYPE,
            OrderCancelled::TYPE,
            OrderCompleted::TYPE,
            ProductViewed::TYPE,
        ]
    }

    /// The reservation record per order guards every handler: a redelivered `order.created`
    /// finds its reservation and changes nothing, a second release or sale finds it released or
    /// sold. No processed-event record is needed, except for a count of views.
    fn records_processed(&self, event: &Envelope) -> bool {
        event.is::<ProductViewed>()
    }

    /// The saga's events wait in one lane (see [`settings`]): when it is behind, those in a
    /// row are applied together, each reservation and product read and written once.
    fn batchable(&self, event: &Envelope) -> bool {
        !event.is::<ProductViewed>()
    }

    async fn handle_all(
        &self,
        events: &[&Envelope],
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        let ops = events
            .iter()
            .map(|event| op_of(event))
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>, _>>()?;
        inventory::apply_all_in(&self.store, session, &ops)
            .await
            .map_err(failed)
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        if let Some(op) = op_of(event)? {
            return inventory::apply_in(&self.store, session, &op)
                .await
                .map_err(failed);
        }
        match ProductViewEvent::decode(event).map_err(HandlerError::malformed)? {
            Some(ProductViewEvent::Viewed(viewed)) => self
                .analytics
                .count_in(session, &viewed)
                .await
                .map_err(failed),
            None => Ok(()),
        }
    }
}
