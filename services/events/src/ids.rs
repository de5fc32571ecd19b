//! The ids the saga passes between services: [`UserId`], [`ProductId`], [`OrderId`].
//!
//! Each is a UUID that cannot be mistaken for another kind of id. It is written as the hyphenated
//! text of the UUID everywhere: JSON events and APIs, BSON documents (`_id: "0190…"`), Kafka keys
//! and URLs — as the services always wrote them, except inside products' reservations, whose lines
//! held a bare `Uuid` that the driver stored as 16 bytes of BSON binary; those still read. Reading
//! one checks it: a stored or received id that is not a UUID is an error, never the nil UUID.

use std::{borrow::Cow, fmt, marker::PhantomData, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, Visitor},
};
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
            /// UUID text; in a binary format (BSON) also the 16 bytes a bare `Uuid` was stored as.
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let visitor = IdVisitor::<$name>(PhantomData);
                if deserializer.is_human_readable() {
                    deserializer.deserialize_str(visitor)
                } else {
                    deserializer.deserialize_any(visitor)
                }
            }
        }

        impl Id for $name {
            const WHAT: &'static str = $what;
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

/// What the id visitor needs to know of each id type.
trait Id: FromStr<Err = InvalidId> + From<Uuid> {
    const WHAT: &'static str;
}

struct IdVisitor<T>(PhantomData<T>);

impl<T: Id> Visitor<'_> for IdVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} (a UUID)", T::WHAT)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<T, E> {
        Uuid::from_slice(bytes)
            .map(T::from)
            .map_err(|_| E::invalid_length(bytes.len(), &self))
    }
}

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

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Stored<T> {
        product_id: T,
    }

    /// As the MongoDB driver writes and reads documents: bson's raw (not human-readable) format.
    fn through_bson<T: Serialize, U: serde::de::DeserializeOwned>(value: &T) -> Result<U, String> {
        let raw = bson::to_raw_document_buf(value).map_err(|e| e.to_string())?;
        bson::from_slice(raw.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn in_bson_an_id_is_text_and_a_uuid_stored_as_binary_still_reads() {
        let id = ProductId::new();
        let raw = bson::to_raw_document_buf(&Stored { product_id: id }).unwrap();
        assert_eq!(
            raw.get_str("product_id").unwrap(),
            id.to_string(),
            "written as text, as every document's `_id`"
        );
        assert_eq!(
            through_bson::<_, Stored<ProductId>>(&Stored { product_id: id }).unwrap(),
            Stored { product_id: id }
        );
        // products' reservations held a bare `Uuid`, which the driver stored as binary.
        let uuid = Uuid::now_v7();
        let old = bson::to_raw_document_buf(&Stored { product_id: uuid }).unwrap();
        assert!(
            old.get_binary("product_id").is_ok(),
            "the old format is binary"
        );
        assert_eq!(
            through_bson::<_, Stored<ProductId>>(&Stored { product_id: uuid }).unwrap(),
            Stored {
                product_id: ProductId::from(uuid)
            }
        );
        // Neither text that is not a UUID nor bytes of another length.
        assert!(through_bson::<_, Stored<ProductId>>(&Stored { product_id: "nope" }).is_err());
        let short = Stored {
            product_id: bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![1, 2, 3],
            },
        };
        assert!(through_bson::<_, Stored<ProductId>>(&short).is_err());
        // JSON takes text only.
        assert!(serde_json::from_str::<ProductId>("[1,2,3]").is_err());
    }

    #[test]
    fn the_schema_is_a_uuid_string() {
        let ours = serde_json::to_value(schemars::schema_for!(ProductId)).unwrap();
        let uuid = serde_json::to_value(schemars::schema_for!(Uuid)).unwrap();
        assert_eq!(ours["format"], "uuid");
        assert_eq!(ours["type"], uuid["type"]);
    }
}
