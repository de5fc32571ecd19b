//! What notifications consumes (orders, payments, products, and users for new accounts), decoded
//! into the notification each event becomes (`domain/notice.rs`). Stored in the consumer's
//! transaction (so a redelivered event makes nothing twice); published to the replicas once that
//! transaction committed.

use std::sync::Arc;

use mongodb::ClientSession;
use storefront_events::{
    Envelope, Event, OrderEvent, PaymentEvent, ProductEvent, Topic, TopicEvent, UserEvent,
    orders::{OrderAwaitingPayment, OrderCancelled, OrderCompleted},
    payments::{PaymentFailed, PaymentRefunded},
    products::{ProductCreated, StockChanged},
    users::UserCreated,
};
use storefront_kit::kafka::{ConsumerSettings, EventHandler, HandlerError, UntilCommitted};
use tokio::sync::mpsc;

use crate::{
    domain::{Draft, order_notice, payment_notice, product_notice},
    store::{NotificationDoc, Store},
};

/// The topics notifications reads.
pub const TOPICS: [Topic; 4] = [
    Topic::Orders,
    Topic::Payments,
    Topic::Products,
    Topic::Users,
];

pub fn settings(topic_prefix: &str) -> ConsumerSettings {
    ConsumerSettings::new(
        &format!("{topic_prefix}.notifications"),
        TOPICS.iter().map(|t| t.name(topic_prefix)).collect(),
    )
    // Every notification takes the next id from one counter in its transaction (ids in commit
    // order, `store.rs`): concurrent lanes only abort each other there.
    .max_lanes(1)
}

pub struct Notifier {
    pub store: Store,
    /// Where stock changes go: straight to the replicas' product sockets, nothing stored.
    hub: Arc<crate::hub::Hub>,
    /// What each transaction in flight stored; handed to `published` once it commits, so an
    /// aborted attempt's notifications are never published.
    pending: UntilCommitted<NotificationDoc>,
    published: mpsc::UnboundedSender<Vec<NotificationDoc>>,
}

impl Notifier {
    pub fn new(
        store: Store,
        published: mpsc::UnboundedSender<Vec<NotificationDoc>>,
        hub: Arc<crate::hub::Hub>,
    ) -> Self {
        Notifier {
            store,
            hub,
            pending: UntilCommitted::default(),
            published,
        }
    }
}

/// The notification an event becomes, if any (`domain/notice.rs` says what).
pub fn draft(event: &Envelope) -> Result<Option<Draft>, HandlerError> {
    let malformed = HandlerError::malformed;
    if let Some(order) = OrderEvent::decode(event).map_err(malformed)? {
        return Ok(order_notice(order));
    }
    if let Some(payment) = PaymentEvent::decode(event).map_err(malformed)? {
        return Ok(payment_notice(payment));
    }
    Ok(ProductEvent::decode(event)
        .map_err(malformed)?
        .and_then(product_notice))
}

impl EventHandler for Notifier {
    fn event_types(&self) -> &[&'static str] {
        &[
            OrderAwaitingPayment::TYPE,
            OrderCompleted::TYPE,
            OrderCancelled::TYPE,
            PaymentFailed::TYPE,
            PaymentRefunded::TYPE,
            ProductCreated::TYPE,
            UserCreated::TYPE,
            StockChanged::TYPE,
        ]
    }

    /// A stock change is news for the product's watchers, not a notification: it is published
    /// on the stock channel with no transaction and nothing stored. A redelivery publishes it
    /// again, which a client ignores (it keeps the highest version).
    async fn apply_idempotent(&self, event: &Envelope) -> Result<bool, HandlerError> {
        if !event.is::<StockChanged>() {
            return Ok(false);
        }
        let Some(ProductEvent::StockChanged(change)) =
            ProductEvent::decode(event).map_err(HandlerError::malformed)?
        else {
            return Ok(false);
        };
        self.hub.publish_stock(&crate::hub::StockNews {
            product_id: change.product_id,
            available: change.stock.available,
            in_stock: change.stock.available > 0,
            version: event.version,
        });
        Ok(true)
    }

    async fn handle(
        &self,
        event: &Envelope,
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        self.pending.begin(event);
        if let Some(UserEvent::Created(user)) =
            UserEvent::decode(event).map_err(HandlerError::malformed)?
        {
            self.store
                .welcome(session, user.user_id, user.created_at)
                .await?;
            return Ok(());
        }
        let Some(draft) = draft(event)? else {
            return Ok(());
        };
        let stored = self
            .store
            .insert(session, draft, event.id)
            .await?
            .ok_or(HandlerError::Duplicate)?;
        self.pending.keep(event, stored);
        Ok(())
    }

    /// No processed-event record: a notification's `event_id` is unique, so a redelivery runs
    /// into the one it made ([`HandlerError::Duplicate`]), and a welcome only raises a mark
    /// (`$max`), which a second time leaves as it is.
    fn records_processed(&self, _event: &Envelope) -> bool {
        false
    }

    /// The one lane's notifications, when it is behind, are stored together: one counter
    /// increment and one insert for all that wait (welcomes and stock news go one at a time).
    fn batchable(&self, event: &Envelope) -> bool {
        !event.is::<UserCreated>() && !event.is::<StockChanged>()
    }

    async fn handle_all(
        &self,
        events: &[&Envelope],
        session: &mut ClientSession,
    ) -> Result<(), HandlerError> {
        let mut drafts = Vec::with_capacity(events.len());
        let mut from = Vec::with_capacity(events.len());
        for event in events {
            self.pending.begin(event);
            if let Some(draft) = draft(event)? {
                drafts.push((draft, event.id));
                from.push(*event);
            }
        }
        let stored = self.store.insert_all(session, drafts).await?;
        for (event, stored) in from.into_iter().zip(stored) {
            self.pending.keep(event, stored);
        }
        Ok(())
    }

    fn committed(&self, event: &Envelope) {
        let stored = self.pending.take(event);
        if let Some(stored) = stored {
            let _ = self.published.send(vec![stored]);
        }
    }
}

/// Publishes what the consumer committed, in commit order.
pub async fn publish(
    hub: Arc<crate::hub::Hub>,
    mut committed: mpsc::UnboundedReceiver<Vec<NotificationDoc>>,
) {
    while let Some(docs) = committed.recv().await {
        hub.publish(&docs).await;
    }
}
