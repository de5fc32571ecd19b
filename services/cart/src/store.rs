//! The cart database: `carts` (one per customer, keyed by user id) and `products` (cart's replica
//! of the catalog, the kit's `replica::Products`).

use mongodb::{
    ClientSession, Collection,
    bson::{self, doc},
};
use serde::{Deserialize, Serialize};
use storefront_kit::replica::{ProductReplica, Products};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub product_id: String,
    pub quantity: i64,
}

/// The lines handed to an order at checkout, taken out of the cart once it is paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkout {
    pub order_id: String,
    pub items: Vec<Item>,
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
    pub fn empty(user: Uuid) -> Self {
        CartDoc {
            id: user.to_string(),
            items: Vec::new(),
            checkouts: Vec::new(),
            version: 0,
            updated_at: bson::DateTime::now(),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    carts: Collection<CartDoc>,
    pub products: Products,
}

impl Store {
    pub fn new(db: &mongodb::Database) -> Self {
        Store {
            carts: db.collection("carts"),
            products: Products::new(db),
        }
    }

    pub async fn cart(&self, user: Uuid) -> Result<CartDoc, mongodb::error::Error> {
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
        user: Uuid,
        edit: impl Fn(&mut CartDoc) -> Result<T, E>,
    ) -> Result<(T, CartDoc), E>
    where
        E: From<mongodb::error::Error>,
    {
        loop {
            let mut cart = self.cart(user).await?;
            let before = cart.version;
            let out = edit(&mut cart)?;
            cart.version = before + 1;
            cart.updated_at = bson::DateTime::now();
            let written = self
                .carts
                .replace_one(doc! { "_id": &cart.id, "version": before }, &cart)
                .upsert(true)
                .await;
            match written {
                Ok(r) if r.matched_count == 1 || r.upserted_id.is_some() => return Ok((out, cart)),
                Ok(_) => continue,
                // Upserting a cart another request created first.
                Err(e) if storefront_kit::mongo::is_duplicate_key(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn products(
        &self,
        ids: &[String],
    ) -> Result<Vec<ProductReplica>, mongodb::error::Error> {
        self.products.get(ids).await
    }

    /// Takes a paid order's lines out of its customer's cart (what was added since stays).
    pub async fn paid_in(
        &self,
        session: &mut ClientSession,
        user: Uuid,
        order: Uuid,
    ) -> Result<bool, mongodb::error::Error> {
        let Some(mut cart) = self
            .carts
            .find_one(doc! { "_id": user.to_string() })
            .session(&mut *session)
            .await?
        else {
            return Ok(false);
        };
        let Some(at) = cart
            .checkouts
            .iter()
            .position(|c| c.order_id == order.to_string())
        else {
            return Ok(false);
        };
        let checkout = cart.checkouts.remove(at);
        for paid in checkout.items {
            if let Some(item) = cart
                .items
                .iter_mut()
                .find(|i| i.product_id == paid.product_id)
            {
                item.quantity -= paid.quantity;
            }
        }
        cart.items.retain(|i| i.quantity > 0);
        cart.version += 1;
        cart.updated_at = bson::DateTime::now();
        self.carts
            .replace_one(doc! { "_id": &cart.id }, &cart)
            .session(session)
            .await?;
        Ok(true)
    }
}
