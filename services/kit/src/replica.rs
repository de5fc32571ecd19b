//! Version-ordered replicas (docs/architecture.md): a service's own copy of another service's
//! aggregates, applying an event only when its version is the next one. Older versions are
//! replays and change nothing; a newer one means an event went missing, which is an error (the
//! consumer retries it, then dead-letters it) rather than a silent jump.
//!
//! One refinement: an event that carries the *whole* state (a snapshot, like `product.updated`)
//! applies whenever it is newer, gap or not, because nothing before it is needed. That is how a
//! replica that missed events catches up from a resync (`products resync`). A deletion, the
//! product's last event, applies whenever it is newer too.
//!
//! [`ProductReplica`] is the catalog copy cart and orders both keep. Cart's follows stock as well
//! ([`PRODUCT_EVENTS`]); orders prices and names lines but never reads stock, so it takes only
//! [`CATALOG_EVENTS`] — the two replica writes a `stock.changed` cost it per order are gone, and
//! its `available` stays at the last snapshot's figure. Its writes need no transaction: the
//! version in the write's filter is what makes a replay change nothing
//! ([`Products::apply_idempotent`]), so the consumer runs them without a processed-event record —
//! one command per event instead of a transaction of four.

use mongodb::{Collection, Database, bson::doc};
use serde::{Deserialize, Serialize};
use storefront_events::{
    Envelope, Money, ProductEvent, ProductId, TopicEvent,
    products::{ProductCreated, ProductDeleted, ProductSnapshot, ProductUpdated, StockChanged},
};

use crate::{kafka::HandlerError, mongo::is_duplicate_key};

/// The event types a [`ProductReplica`] that follows stock is built from.
pub const PRODUCT_EVENTS: [&str; 4] = [
    <ProductCreated as storefront_events::Event>::TYPE,
    <ProductUpdated as storefront_events::Event>::TYPE,
    <StockChanged as storefront_events::Event>::TYPE,
    <ProductDeleted as storefront_events::Event>::TYPE,
];

/// The event types of a [`ProductReplica`] that does not follow stock: its `available` stays
/// what the last snapshot said.
pub const CATALOG_EVENTS: [&str; 3] = [
    <ProductCreated as storefront_events::Event>::TYPE,
    <ProductUpdated as storefront_events::Event>::TYPE,
    <ProductDeleted as storefront_events::Event>::TYPE,
];

/// Where an incoming version stands against the replica's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// Seen before: ignore.
    Stale,
    /// The next one: apply.
    Next,
    /// Something between is missing.
    Gap { have: i64 },
}

pub fn sequence(current: Option<i64>, incoming: i64) -> Sequence {
    let have = current.unwrap_or(0);
    match incoming.cmp(&(have + 1)) {
        std::cmp::Ordering::Less => Sequence::Stale,
        std::cmp::Ordering::Equal => Sequence::Next,
        std::cmp::Ordering::Greater => Sequence::Gap { have },
    }
}

/// What a consuming service knows of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductReplica {
    #[serde(rename = "_id")]
    pub id: ProductId,
    pub title: String,
    pub price: Money,
    /// The primary image's key (`GET /api/products/{id}` has its URL).
    #[serde(default)]
    pub image: Option<String>,
    /// Current only in a replica fed `stock.changed` ([`PRODUCT_EVENTS`]).
    pub available: i64,
    pub deleted: bool,
    pub version: i64,
}

impl ProductReplica {
    fn of(product: &ProductSnapshot, version: u64) -> Self {
        ProductReplica {
            id: product.product_id,
            title: product.title.clone(),
            price: product.price.clone(),
            image: product
                .images
                .iter()
                .find(|i| i.primary)
                .map(|i| i.key.clone()),
            available: product.stock.available,
            deleted: product.deleted,
            version: version as i64,
        }
    }
}

/// The `products` collection of a consuming service.
#[derive(Clone)]
pub struct Products {
    products: Collection<ProductReplica>,
}

impl Products {
    pub fn new(db: &Database) -> Self {
        Products {
            products: db.collection("products"),
        }
    }

    pub async fn get(
        &self,
        ids: &[ProductId],
    ) -> Result<Vec<ProductReplica>, mongodb::error::Error> {
        use futures::TryStreamExt;
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        self.products
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await
    }
}

impl Products {
    /// Applies `event` if it is a product event, with one version-guarded write and no
    /// transaction; `Ok(false)` for any other event. A snapshot replaces an older copy (or makes
    /// the first); a partial change applies only on the version right before it. A replay matches
    /// nothing and changes nothing; a gap is an error (the runner retries it, then dead-letters it).
    pub async fn apply_idempotent(&self, event: &Envelope) -> Result<bool, HandlerError> {
        let version = event.version as i64;
        // Inventory's answers share the topic: left undecoded (the saga's handler reads them).
        if !PRODUCT_EVENTS.contains(&event.event_type.as_str()) {
            return Ok(false);
        }
        let Some(change) = ProductEvent::decode(event).map_err(HandlerError::malformed)? else {
            return Ok(false);
        };
        let (id, set) = match change {
            ProductEvent::Created(ProductCreated { product })
            | ProductEvent::Updated(ProductUpdated { product }) => {
                let next = ProductReplica::of(&product, event.version);
                let written = self
                    .products
                    .replace_one(
                        doc! { "_id": next.id.to_string(), "version": { "$lt": version } },
                        &next,
                    )
                    .upsert(true)
                    .await;
                return match written {
                    // A copy at this version or a newer one is there already: the filter missed and
                    // the upsert ran into its id.
                    Ok(_) => Ok(true),
                    Err(e) if is_duplicate_key(&e) => Ok(true),
                    Err(e) => Err(e.into()),
                };
            }
            ProductEvent::StockChanged(data) => (
                data.product_id.to_string(),
                doc! { "available": data.stock.available },
            ),
            // The end of the product: it applies over a gap like a snapshot (what came between
            // no longer matters), so a replica that does not follow stock (orders') takes it too.
            ProductEvent::Deleted(deleted) => {
                let id = deleted.product_id.to_string();
                let written = self
                    .products
                    .update_one(
                        doc! { "_id": &id, "version": { "$lt": version } },
                        doc! { "$set": { "deleted": true, "version": version } },
                    )
                    .await?;
                if written.matched_count == 1 {
                    return Ok(true);
                }
                return match self.products.find_one(doc! { "_id": &id }).await? {
                    Some(_) => Ok(true),
                    None => Err(HandlerError::Failed(
                        format!("{id}: a deletion of something never created").into(),
                    )),
                };
            }
            // Inventory's answers to orders are not the catalog's.
            ProductEvent::InventoryReserved(_) | ProductEvent::InventoryRejected(_) => {
                return Ok(false);
            }
        };
        let mut set = set;
        set.insert("version", version);
        let written = self
            .products
            .update_one(
                doc! { "_id": &id, "version": version - 1 },
                doc! { "$set": set },
            )
            .await?;
        if written.matched_count == 1 {
            return Ok(true);
        }
        let current = self.products.find_one(doc! { "_id": &id }).await?;
        match sequence(current.as_ref().map(Versioned::version), version) {
            Sequence::Stale => Ok(true),
            Sequence::Gap { have } => Err(HandlerError::Failed(
                format!("{id} is at version {have} here; event version {version} leaves a gap")
                    .into(),
            )),
            Sequence::Next if current.is_none() => Err(HandlerError::Failed(
                format!("{id}: a change for something never created").into(),
            )),
            // It moved to the version before this one in between: run it again.
            Sequence::Next => Err(HandlerError::Conflict(format!("{id} changed meanwhile"))),
        }
    }
}

/// A replicated document's version.
pub trait Versioned {
    fn version(&self) -> i64;
}

impl Versioned for ProductReplica {
    fn version(&self) -> i64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_next_version_applies() {
        assert_eq!(sequence(None, 1), Sequence::Next);
        assert_eq!(sequence(None, 2), Sequence::Gap { have: 0 });
        assert_eq!(sequence(Some(3), 4), Sequence::Next);
        assert_eq!(sequence(Some(3), 3), Sequence::Stale);
        assert_eq!(sequence(Some(3), 1), Sequence::Stale);
        assert_eq!(sequence(Some(3), 6), Sequence::Gap { have: 3 });
    }
}
