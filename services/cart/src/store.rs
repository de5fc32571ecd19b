//! The cart database: `carts` (one per customer, keyed by user id) and `products` (cart's replica
//! of the catalog, the kit's `replica::Products`).
//!
//! Checkout *holds* the cart's lines before it asks orders for the order (docs/api/cart.md): they
//! leave `items` for a `Checkout` under the request's `Idempotency-Key`, in one version-guarded
//! write, so no second checkout can order them again — not a parallel one, not one made before
//! the first order is paid. The hold learns its order from orders' answer or from `order.created`
//! (which carries the key); it ends when the order does: `order.completed` drops it (the lines are
//! bought), `order.cancelled` puts its lines back into the cart.

use chrono::Duration;
use mongodb::{
    Collection,
    bson::{self, doc},
};
use serde::{Deserialize, Serialize};
use storefront_events::{OrderId, ProductId, UserId, products::LineQuantity};
use storefront_kit::{
    fanout::CartCount,
    replica::{ProductReplica, Products},
};

/// Most of one product in a cart (the same bound as an order line).
pub const MAX_QUANTITY: i64 = 100;
/// Most distinct products in a cart (an order's line limit).
pub const MAX_ITEMS: usize = 50;
/// A hold that never learned its order (orders never answered and no `order.created` came with
/// its key) gives its lines back after this long.
pub const UNPLACED_HOLD_MINUTES: i64 = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub product_id: ProductId,
    pub quantity: i64,
}

impl Item {
    /// The line an order of this item has.
    pub fn line(&self) -> LineQuantity {
        LineQuantity {
            product_id: self.product_id,
            quantity: self.quantity,
        }
    }
}

/// Lines taken out of the cart by a checkout, until its order ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkout {
    /// The checkout's `Idempotency-Key`.
    #[serde(default)]
    pub key: String,
    /// The order, once known.
    #[serde(default)]
    pub order_id: Option<OrderId>,
    pub items: Vec<Item>,
    #[serde(default = "bson::DateTime::now")]
    pub held_at: bson::DateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartDoc {
    /// The user id.
    #[serde(rename = "_id")]
    pub id: String,
    pub items: Vec<Item>,
    #[serde(default)]
    pub checkouts: Vec<Checkout>,
    /// Rises with every write; a write of a cart that changed since it was read is run again.
    #[serde(default)]
    pub version: i64,
    pub updated_at: bson::DateTime,
}

impl CartDoc {
    /// How many items the cart holds (what its badge shows).
    pub fn count(&self) -> i64 {
        self.items.iter().map(|i| i.quantity).sum()
    }

    pub fn empty(user: UserId) -> Self {
        CartDoc {
            id: user.to_string(),
            items: Vec::new(),
            checkouts: Vec::new(),
            version: 0,
            updated_at: bson::DateTime::now(),
        }
    }

    /// Adds `items` back into the cart: quantities of a product already there add up to at most
    /// [`MAX_QUANTITY`]; products beyond [`MAX_ITEMS`] are left out. Returns what did not fit.
    pub fn put_back(&mut self, items: Vec<Item>) -> Vec<Item> {
        let mut left_out = Vec::new();
        for back in items {
            let distinct = self.items.len();
            match self
                .items
                .iter_mut()
                .find(|i| i.product_id == back.product_id)
            {
                Some(item) => {
                    let room = MAX_QUANTITY - item.quantity;
                    item.quantity += back.quantity.min(room);
                    if back.quantity > room {
                        left_out.push(Item {
                            quantity: back.quantity - room,
                            ..back
                        });
                    }
                }
                None if distinct < MAX_ITEMS => self.items.push(Item {
                    quantity: back.quantity.min(MAX_QUANTITY),
                    ..back
                }),
                None => left_out.push(back),
            }
        }
        left_out
    }

    /// Ends the hold of `key`, putting its lines back. Whether there was one.
    pub fn release(&mut self, key: &str) -> bool {
        let Some(at) = self.checkouts.iter().position(|c| c.key == key) else {
            return false;
        };
        let hold = self.checkouts.remove(at);
        self.put_back(hold.items);
        true
    }

    /// Holds that never learned their order within [`UNPLACED_HOLD_MINUTES`] give their lines
    /// back. Whether any did.
    pub fn release_unplaced(&mut self, now: bson::DateTime) -> bool {
        let limit = now.to_chrono() - Duration::minutes(UNPLACED_HOLD_MINUTES);
        let stale: Vec<String> = self
            .checkouts
            .iter()
            .filter(|c| c.order_id.is_none() && c.held_at.to_chrono() < limit)
            .map(|c| c.key.clone())
            .collect();
        for key in &stale {
            self.release(key);
        }
        !stale.is_empty()
    }
}

/// Why a consumer's write of a cart did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    /// The cart changed between read and write: run it again.
    #[error("the cart changed while it was being written")]
    Raced,
}

/// How an order ended, for the lines its checkout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEnd {
    /// Bought: the held lines are gone for good.
    Completed,
    /// Not bought: the held lines go back into the cart.
    Cancelled,
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
            let Some(at) = cart
                .checkouts
                .iter()
                .position(|c| c.order_id == Some(order))
            else {
                return false;
            };
            let hold = cart.checkouts.remove(at);
            let left_out = cart.put_back(hold.items);
            if !left_out.is_empty() {
                tracing::warn!(%order, ?left_out, "the cart is full; these lines did not go back");
            }
            true
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same id for the same name.
    fn id(name: &str) -> ProductId {
        let mut bytes = [0u8; 16];
        for (i, b) in name.bytes().take(16).enumerate() {
            bytes[i] = b;
        }
        ProductId::from(uuid::Uuid::from_bytes(bytes))
    }

    fn item(product: &str, quantity: i64) -> Item {
        Item {
            product_id: id(product),
            quantity,
        }
    }

    #[test]
    fn lines_put_back_add_up_within_the_limits() {
        let mut cart = CartDoc::empty(UserId::new());
        cart.items = vec![item("mug", 99)];
        let left = cart.put_back(vec![item("mug", 3), item("lamp", 2)]);
        assert_eq!(cart.items, vec![item("mug", 100), item("lamp", 2)]);
        assert_eq!(left, vec![item("mug", 2)]);

        let mut full = CartDoc::empty(UserId::new());
        full.items = (0..MAX_ITEMS).map(|i| item(&i.to_string(), 1)).collect();
        assert_eq!(full.put_back(vec![item("new", 1)]), vec![item("new", 1)]);
        assert_eq!(full.items.len(), MAX_ITEMS);
    }

    #[test]
    fn only_holds_that_never_learned_their_order_expire() {
        let mut cart = CartDoc::empty(UserId::new());
        let long_ago = bson::DateTime::from_millis(
            bson::DateTime::now().timestamp_millis() - (UNPLACED_HOLD_MINUTES + 1) * 60_000,
        );
        cart.checkouts = vec![
            Checkout {
                key: "lost".into(),
                order_id: None,
                items: vec![item("mug", 1)],
                held_at: long_ago,
            },
            Checkout {
                key: "placed".into(),
                order_id: Some(OrderId::new()),
                items: vec![item("lamp", 1)],
                held_at: long_ago,
            },
            Checkout {
                key: "fresh".into(),
                order_id: None,
                items: vec![item("cup", 1)],
                held_at: bson::DateTime::now(),
            },
        ];
        assert!(cart.release_unplaced(bson::DateTime::now()));
        assert_eq!(cart.items, vec![item("mug", 1)]);
        let keys: Vec<&str> = cart.checkouts.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["placed", "fresh"]);
        assert!(!cart.release_unplaced(bson::DateTime::now()));
    }
}
