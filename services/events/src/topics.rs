//! Every event of one topic as one enum: [`UserEvent`], [`ProductEvent`], [`ProductViewEvent`],
//! [`OrderEvent`], [`PaymentEvent`].
//!
//! A consumer decodes an envelope into its topic's enum and `match`es it without a catch-all, so
//! an event type added to a topic is a compile error in every consumer of that topic until it
//! says what it does with it (most say: nothing). A type this version does not know decodes to
//! `None`: consumers acknowledge it unread, as a newer publisher may send it during a rollout.

use serde::Deserialize;

use crate::{Envelope, EnvelopeError, Event, Topic, orders::*, payments::*, products::*, users::*};

/// The events of one topic, as one type.
pub trait TopicEvent: Sized {
    const TOPIC: Topic;
    /// The wire name of every event on the topic.
    const TYPES: &'static [&'static str];
    /// The envelope's data as the event its type names; `Ok(None)` when the type is not one of
    /// this topic's, an error when the data does not fit the type.
    fn decode(envelope: &Envelope) -> Result<Option<Self>, EnvelopeError>;
}

macro_rules! topic_event {
    ($(#[$doc:meta])* $name:ident on $topic:expr => { $($variant:ident($ty:ty)),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($variant($ty)),+
        }

        impl TopicEvent for $name {
            const TOPIC: Topic = $topic;
            const TYPES: &'static [&'static str] = &[$(<$ty as Event>::TYPE),+];

            fn decode(envelope: &Envelope) -> Result<Option<Self>, EnvelopeError> {
                $(
                    if envelope.is::<$ty>() {
                        return Ok(Some($name::$variant(<$ty>::deserialize(&envelope.data)?)));
                    }
                )+
                Ok(None)
            }
        }

        $(
            impl From<$ty> for $name {
                fn from(event: $ty) -> Self {
                    $name::$variant(event)
                }
            }
        )+
    };
}

topic_event!(
    /// `{prefix}.users`, published by auth.
    UserEvent on Topic::Users => {
        Created(UserCreated),
        Updated(UserUpdated),
        Blocked(UserBlocked),
        Unblocked(UserUnblocked),
    }
);

topic_event!(
    /// `{prefix}.products`, published by products: the catalog, its stock and inventory's answers
    /// to orders (saga steps 2 and 3).
    ProductEvent on Topic::Products => {
        Created(ProductCreated),
        Updated(ProductUpdated),
        Deleted(ProductDeleted),
        StockChanged(StockChanged),
        InventoryReserved(InventoryReserved),
        InventoryRejected(InventoryRejected),
    }
);

topic_event!(
    /// `{prefix}.product-views`, published by products: the shop's browsing.
    ProductViewEvent on Topic::ProductViews => {
        Viewed(ProductViewed),
    }
);

topic_event!(
    /// `{prefix}.orders`, published by orders: an order's life and its refunds.
    OrderEvent on Topic::Orders => {
        Created(OrderCreated),
        AwaitingPayment(OrderAwaitingPayment),
        Completed(OrderCompleted),
        Cancelled(OrderCancelled),
        RefundDue(OrderRefundDue),
        Refunded(OrderRefunded),
    }
);

topic_event!(
    /// `{prefix}.payments`, published by payments (saga step 5 and refunds).
    PaymentEvent on Topic::Payments => {
        Succeeded(PaymentSucceeded),
        Failed(PaymentFailed),
        Refunded(PaymentRefunded),
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event type of every topic, as `(type, topic)`, from the `Event` impls.
    fn every_event() -> Vec<(&'static str, Topic)> {
        fn of<E: Event>() -> (&'static str, Topic) {
            (E::TYPE, E::TOPIC)
        }
        vec![
            of::<UserCreated>(),
            of::<UserUpdated>(),
            of::<UserBlocked>(),
            of::<UserUnblocked>(),
            of::<ProductCreated>(),
            of::<ProductUpdated>(),
            of::<ProductDeleted>(),
            of::<StockChanged>(),
            of::<InventoryReserved>(),
            of::<InventoryRejected>(),
            of::<ProductViewed>(),
            of::<OrderCreated>(),
            of::<OrderAwaitingPayment>(),
            of::<OrderCompleted>(),
            of::<OrderCancelled>(),
            of::<OrderRefundDue>(),
            of::<OrderRefunded>(),
            of::<PaymentSucceeded>(),
            of::<PaymentFailed>(),
            of::<PaymentRefunded>(),
        ]
    }

    fn enums() -> [(Topic, &'static [&'static str]); 5] {
        [
            (UserEvent::TOPIC, UserEvent::TYPES),
            (ProductEvent::TOPIC, ProductEvent::TYPES),
            (ProductViewEvent::TOPIC, ProductViewEvent::TYPES),
            (OrderEvent::TOPIC, OrderEvent::TYPES),
            (PaymentEvent::TOPIC, PaymentEvent::TYPES),
        ]
    }

    #[test]
    fn every_event_is_in_the_enum_of_its_topic_and_no_other() {
        let events = every_event();
        assert_eq!(
            events.len(),
            crate::schemas::all().len() - 1,
            "one schema per event"
        );
        for (event_type, topic) in &events {
            let holders: Vec<Topic> = enums()
                .into_iter()
                .filter(|(_, types)| types.contains(event_type))
                .map(|(t, _)| t)
                .collect();
            assert_eq!(holders, [*topic], "{event_type}");
        }
        let listed: usize = enums().iter().map(|(_, types)| types.len()).sum();
        assert_eq!(listed, events.len());
    }

    #[test]
    fn an_envelope_decodes_into_its_variant_other_types_into_none_bad_data_into_an_error() {
        let rejected = InventoryRejected {
            order_id: crate::OrderId::new(),
            reason: "short".into(),
            short: Vec::new(),
        };
        let raw = Envelope::new("products", rejected.order_id, 1, rejected.clone())
            .into_raw()
            .unwrap();
        assert_eq!(
            ProductEvent::decode(&raw).unwrap(),
            Some(ProductEvent::InventoryRejected(rejected))
        );
        assert_eq!(OrderEvent::decode(&raw).unwrap(), None);

        let mut newer = raw.clone();
        newer.event_type = "inventory.expired".into();
        assert_eq!(ProductEvent::decode(&newer).unwrap(), None);

        let mut broken = raw;
        broken.data = serde_json::json!({ "order_id": "not-an-id" });
        assert!(matches!(
            ProductEvent::decode(&broken),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
