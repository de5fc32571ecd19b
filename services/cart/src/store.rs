//! The cart database: `carts` (one per customer, keyed by user id) and `products` (cart's replica
//! of the catalog, the kit's `replica::Products`).
//!
//! Checkout *holds* the cart's lines before it asks orders for the order (docs/api/cart.md): they
//! leave `items` for a `Checkout` under the request's `Idempotency-Key`, in one version-guarded
//! write, so no second checkout can order them again — not a parallel one, not one made before
//! the first order is paid. The hold learns its order from orders' answer or from `order.created`
//! (which carries the key); it ends when the order does: `order.completed` drops it (the lines are
//! bought), `order.cancelled` puts its lines back into the cart.

use mongodb::{
    Collection,
    bson::{self, doc},
};
use storefront_events::{OrderId, ProductId, UserId};
use storefront_kit::{
    fanout::CartCount,
    replica::{ProductReplica, Products},
};

pub use crate::domain::{
    CartDoc, Checkout, Item, MAX_ITEMS, MAX_QUANTITY, OrderEnd, UNPLACED_HOLD_MINUTES,
};

/// Why a consumer's write of a cart did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    /// The cart changed between read and write: run it again.
    #[error("the cart changed while it was being written")]
    Raced,
}

#[derive(Clone)]
pub struct Store {
    carts: Collection<CartDoc>,
    pub products: Products,
    /// Where a write that changes the items says the new count (`storefront_kit::fanout`), and
    /// the shop's prefix.
    news: Option<(redis::aio::ConnectionManager, String)>,
}

impl Store {
    pub fn new(db: &mongodb::Database) -> Self {
        Store {
            carts: db.collection("carts"),
            products: Products::new(db),
            news: None,
        }
    }

    /// Announces every cart's new item count on the shop's `{prefix}:carts` channel.
    pub fn with_news(mut self, redis: redis::aio::ConnectionManager, prefix: &str) -> Self {
        self.news = Some((redis, prefix.to_owned()));
        self
    }

    /// Tells the customer's open pages how many items their cart holds now (not awaited); only
    /// after a write that changed the items (a hold learning its order changes no count).
    fn announce(&self, cart: &CartDoc) {
        let (Some((redis, prefix)), Ok(user)) = (&self.news, cart.id.parse()) else {
            return;
        };
        CartCount {
            user,
            count: cart.count(),
            version: cart.version,
        }
        .announce(redis, prefix);
    }

    pub async fn cart(&self, user: UserId) -> Result<CartDoc, mongodb::error::Error> {
        Ok(self
            .carts
            .find_one(doc! { "_id": user.to_string() })
            .await?
            .unwrap_or_else(|| CartDoc::empty(user)))
    }

    /// Reads the cart, lets `edit` change it and writes it back, unless it changed in between
    /// (then all again). `edit`'s error leaves the cart as it was.
    pub async fn update<T, E>(
        &self,
        user: UserId,
        edit: impl Fn(&mut CartDoc) -> Result<T, E>,
    ) -> Result<(T, CartDoc), E>
    where
        E: From<mongodb::error::Error>,
    {
        loop {
            let mut cart = self.cart(user).await?;
            let before = cart.version;
            let items_before = cart.items.clone();
            let out = edit(&mut cart)?;
            cart.version = before + 1;
            cart.updated_at = bson::DateTime::now();
            let written = self
                .carts
                .replace_one(doc! { "_id": &cart.id, "version": before }, &cart)
                .upsert(true)
                .await;
            match written {
                Ok(r) if r.matched_count == 1 || r.upserted_id.is_some() => {
                    if cart.items != items_before {
                        self.announce(&cart);
                    }
                    return Ok((out, cart));
                }
                Ok(_) => continue,
                // Upserting a cart another request created first.
                Err(e) if storefront_kit::mongo::is_duplicate_key(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn products(
        &self,
        ids: &[ProductId],
    ) -> Result<Vec<ProductReplica>, mongodb::error::Error> {
        self.products.get(ids).await
    }

    /// `edit` the customer's cart, if they have one, and write it back when `edit` says it
    /// changed it. The write is guarded by the version read, so a checkout that wrote meanwhile
    /// makes this [`WriteError::Raced`] (the consumer runs it again) rather than a lost write.
    async fn edit(
        &self,
        user: UserId,
        edit: impl FnOnce(&mut CartDoc) -> bool,
    ) -> Result<bool, WriteError> {
        let Some(mut cart) = self
            .carts
            .find_one(doc! { "_id": user.to_string() })
            .await?
        else {
            return Ok(false);
        };
        if !edit(&mut cart) {
            return Ok(false);
        }
        let before = cart.version;
        cart.version += 1;
        cart.updated_at = bson::DateTime::now();
        let written = self
            .carts
            .replace_one(doc! { "_id": &cart.id, "version": before }, &cart)
            .await?;
        if written.matched_count == 0 {
            return Err(WriteError::Raced);
        }
        self.announce(&cart);
        Ok(true)
    }

    /// `order.created` with a checkout's key: the hold learns its order (when orders' HTTP
    /// answer was lost, this is how). One targeted update, which matches only a hold with that key
    /// and no order yet: a redelivery matches nothing, so it needs neither a transaction nor a
    /// processed-event record. The version still rises, so a checkout that read the cart before
    /// retries its write.
    pub async fn placed(
        &self,
        user: UserId,
        key: &str,
        order: OrderId,
    ) -> Result<bool, WriteError> {
        let written = self
            .carts
            .update_one(
                doc! {
                    "_id": user.to_string(),
                    "checkouts": { "$elemMatch": { "key": key, "order_id": null } },
                },
                doc! {
                    "$set": { "checkouts.$.order_id": order.to_string(), "updated_at": bson::DateTime::now() },
                    "$inc": { "version": 1_i64 },
                },
            )
            .await?;
        Ok(written.matched_count == 1)
    }

    /// The order ended: its held lines are bought, or go back into the cart. Either write
    /// removes the hold, so a redelivery finds none and changes nothing.
    pub async fn ended(
        &self,
        user: UserId,
        order: OrderId,
        end: OrderEnd,
    ) -> Result<bool, WriteError> {
        if end == OrderEnd::Completed {
            let order = order.to_string();
            // Bought: the hold only goes, in one targeted update.
            let written = self
                .carts
                .update_one(
                    doc! { "_id": user.to_string(), "checkouts.order_id": &order },
                    doc! {
                        "$pull": { "checkouts": { "order_id": &order } },
                        "$set": { "updated_at": bson::DateTime::now() },
                        "$inc": { "version": 1_i64 },
                    },
                )
                .await?;
            return Ok(written.matched_count == 1);
        }
        self.edit(user, |cart| {
            let Some(left_out) = cart.cancelled(order) else {
                return false;
            };
            if !left_out.is_empty() {
                tracing::warn!(%order, ?left_out, "the cart is full; these lines did not go back");
            }
            true
        })
        .await
    }
}
