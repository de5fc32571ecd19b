//! The ids the saga passes between services: [`UserId`], [`ProductId`], [`OrderId`].
//!
//! Each is a UUID (v7 when the shop makes one) that cannot be mistaken for another kind of id. On
//! every wire and in every document it is the hyphenated text of the UUID, as it always was: JSON
//! events and APIs, BSON documents (`_id: "0190…"`), Kafka keys and URLs. Reading one checks it —
//! a stored or received id that is not a UUID is an error, never the nil UUID.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use uuid::Uuid;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        // No `Default`: a defaulted id would be a fresh random one, a surprise in a derived struct.
        #[allow(clippy::new_without_default)]
        impl $name {
            /// A new id (UUID v7: ordered by creation time).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// Reads the text of an id, naming what it is when it is not one.
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                raw.parse()
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(raw: &str) -> Result<Self, InvalidId> {
                Uuid::parse_str(raw).map(Self).map_err(|_| InvalidId {
                    what: $what,
                    raw: raw.chars().take(64).collect(),
                })
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.to_string()
            }
        }

        impl Serialize for $name {
            /// Text in every format, BSON too (where a bare `Uuid` would become binary).
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = Cow::<'de, str>::deserialize(deserializer)?;
                raw.parse().map_err(de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            /// The schema of a UUID, inlined, so the generated contracts read as before.
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                Uuid::schema_name()
            }
            fn json_schema(generator: &mut SchemaGenerator) -> Schema {
                Uuid::json_schema(generator)
            }
        }
    };
}

id!(
    /// A customer's or admin's account (auth's users).
    UserId,
    "user id"
);
id!(
    /// A product of the catalog (products).
    ProductId,
    "product id"
);
id!(
    /// An order (orders); payments keys a payment by its order's id too.
    OrderId,
    "order id"
);

/// Text that should have been an id and is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {raw:?} is not a UUID")]
pub struct InvalidId {
    pub what: &'static str,
    pub raw: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_the_uuid_text() {
        let uuid = Uuid::now_v7();
        let id = OrderId::from(uuid);
        let text = uuid.hyphenated().to_string();
        assert_eq!(id.to_string(), text);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<OrderId>(&format!("\"{text}\"")).unwrap(),
            id
        );
        assert_eq!(text.parse::<OrderId>().unwrap(), id);
        assert_eq!(Uuid::from(id), uuid);
    }

    #[test]
    fn text_that_is_not_a_uuid_is_an_error_never_the_nil_uuid() {
        let err = "not-an-id".parse::<ProductId>().unwrap_err();
        assert_eq!(err.to_string(), "product id \"not-an-id\" is not a UUID");
        assert!(serde_json::from_str::<UserId>("\"\"").is_err());
        assert!(serde_json::from_str::<UserId>("42").is_err());
        assert_ne!(UserId::new().as_uuid(), &Uuid::nil());
    }

    #[test]
    fn the_schema_is_a_uuid_string() {
        let ours = serde_json::to_value(schemars::schema_for!(ProductId)).unwrap();
        let uuid = serde_json::to_value(schemars::schema_for!(Uuid)).unwrap();
        assert_eq!(ours["format"], "uuid");
        assert_eq!(ours["type"], uuid["type"]);
    }
}
