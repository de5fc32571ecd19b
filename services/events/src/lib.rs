//! Storefront's event contracts.
//!
//! Every event travels through Kafka inside one [`Envelope`]: an id (for idempotent consumers), a
//! type name, the version of the aggregate it describes (for version-ordered replicas), when it
//! happened, which service published it, the aggregate key (also the Kafka message key, so all events
//! of one aggregate stay ordered in one partition) and the type's data.
//!
//! The event types themselves live in one module per aggregate (`users`, `products`, `orders`,
//! `payments`). Each implements [`Event`], which ties a Rust type to its wire name and its topic;
//! every topic's events are also one enum ([`topics`]) for consumers to `match`. The ids they
//! carry are typed ([`ids`]). JSON Schemas for every event are generated from these types into
//! `docs/events/` (see [`schemas`]); a test fails when they are stale.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

pub mod ids;
pub mod orders;
pub mod payments;
pub mod products;
pub mod topics;
pub mod users;

pub use ids::{InvalidId, OrderId, ProductId, UserId};
pub use topics::{OrderEvent, PaymentEvent, ProductEvent, ProductViewEvent, TopicEvent, UserEvent};

/// An amount of money in integer minor units (cents) of an ISO 4217 currency; never a float.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units, e.g. 1999 for 19.99 USD.
    pub amount: i64,
    /// Upper-case ISO 4217 code, e.g. `USD`.
    pub currency: String,
}

impl std::fmt::Display for Money {
    /// `19.99 USD`: every currency the shop sells in has two decimals.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.amount < 0 { "-" } else { "" };
        let cents = self.amount.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:02} {}",
            cents / 100,
            cents % 100,
            self.currency
        )
    }
}

/// The aggregates that have a topic of their own, `{prefix}.{aggregate}`, and the stream of
/// product views (`{prefix}.product-views`), kept off the products topic so the saga's consumers
/// never see the shop's browsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Users,
    Products,
    Carts,
    Orders,
    Payments,
    ProductViews,
}

impl Topic {
    pub const ALL: [Topic; 6] = [
        Topic::Users,
        Topic::Products,
        Topic::Carts,
        Topic::Orders,
        Topic::Payments,
        Topic::ProductViews,
    ];

    /// The aggregate part of the topic name.
    pub fn aggregate(self) -> &'static str {
        match self {
            Topic::Users => "users",
            Topic::Products => "products",
            Topic::Carts => "carts",
            Topic::Orders => "orders",
            Topic::Payments => "payments",
            Topic::ProductViews => "product-views",
        }
    }

    /// The full topic name for one shop: `{prefix}.{aggregate}`.
    pub fn name(self, prefix: &str) -> String {
        format!("{prefix}.{}", self.aggregate())
    }
}

/// The dead-letter topic of one consumer group for one topic: `{topic}.dlq.{group}`.
pub fn dlq_topic(topic: &str, group: &str) -> String {
    format!("{topic}.dlq.{group}")
}

/// A Rust type that is the `data` of one kind of event.
pub trait Event: Serialize + DeserializeOwned + JsonSchema {
    /// The wire name, e.g. `user.created`.
    const TYPE: &'static str;
    /// The topic (aggregate) the event belongs to.
    const TOPIC: Topic;
}

/// The one envelope every event travels in (docs/architecture.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope<D = serde_json::Value> {
    /// Unique per event; consumers record it to make redelivery harmless.
    pub id: Uuid,
    /// The event's wire name, e.g. `user.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The aggregate's version after this change (1 for the creating event).
    pub version: u64,
    pub occurred_at: DateTime<Utc>,
    /// The publishing service, e.g. `auth`.
    pub source: String,
    /// The aggregate id; also the Kafka message key.
    pub key: String,
    pub data: D,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event is a {found}, not a {expected}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl<D: Event> Envelope<D> {
    /// Wraps `data` in a fresh envelope.
    pub fn new(source: &str, key: impl Into<String>, version: u64, data: D) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            event_type: D::TYPE.to_owned(),
            version,
            occurred_at: Utc::now(),
            source: source.to_owned(),
            key: key.into(),
            data,
        }
    }

    /// The same envelope with its data as untyped JSON, as the outbox and Kafka carry it.
    pub fn into_raw(self) -> Result<Envelope, serde_json::Error> {
        Ok(Envelope {
            id: self.id,
            event_type: self.event_type,
            version: self.version,
            occurred_at: self.occurred_at,
            source: self.source,
            key: self.key,
            data: serde_json::to_value(self.data)?,
        })
    }
}

impl Envelope {
    /// Parses the bytes of a Kafka message.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Whether this is an event of type `D`.
    pub fn is<D: Event>(&self) -> bool {
        self.event_type == D::TYPE
    }

    /// Reads the data as `D`, checking the type name first.
    pub fn decode<D: Event>(&self) -> Result<Envelope<D>, EnvelopeError> {
        if !self.is::<D>() {
            return Err(EnvelopeError::WrongType {
                expected: D::TYPE,
                found: self.event_type.clone(),
            });
        }
        Ok(Envelope {
            id: self.id,
            event_type: self.event_type.clone(),
            version: self.version,
            occurred_at: self.occurred_at,
            source: self.source.clone(),
            key: self.key.clone(),
            data: D::deserialize(&self.data)?,
        })
    }
}

/// JSON Schemas of the envelope and every event, by file name, for `docs/events/`.
pub mod schemas {
    use super::*;

    fn schema_of<T: JsonSchema>() -> String {
        let schema = schemars::schema_for!(T);
        let mut text = serde_json::to_string_pretty(&schema).expect("a schema is always JSON");
        text.push('\n');
        text
    }

    /// `(file name, schema text)` for each contract, in a stable order.
    pub fn all() -> Vec<(String, String)> {
        vec![
            ("envelope.json".to_owned(), schema_of::<Envelope>()),
            file::<users::UserCreated>(),
            file::<users::UserUpdated>(),
            file::<users::UserBlocked>(),
            file::<users::UserUnblocked>(),
            file::<products::ProductCreated>(),
            file::<products::ProductUpdated>(),
            file::<products::ProductDeleted>(),
            file::<products::StockChanged>(),
            file::<products::InventoryReserved>(),
            file::<products::InventoryRejected>(),
            file::<products::ProductViewed>(),
            file::<orders::OrderCreated>(),
            file::<orders::OrderAwaitingPayment>(),
            file::<orders::OrderCompleted>(),
            file::<orders::OrderCancelled>(),
            file::<orders::OrderRefundDue>(),
            file::<orders::OrderRefunded>(),
            file::<payments::PaymentSucceeded>(),
            file::<payments::PaymentFailed>(),
            file::<payments::PaymentRefunded>(),
        ]
    }

    fn file<E: Event>() -> (String, String) {
        (format!("{}.json", E::TYPE), schema_of::<E>())
    }
}
