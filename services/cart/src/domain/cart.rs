//! A customer's cart and the lines its checkouts hold, with the rules that move lines between
//! them. No I/O: the store reads a cart, one of these changes it, the store writes it back
//! version-guarded (`store.rs`).
//!
//! Checkout *holds* the cart's lines before it asks orders for the order: they leave `items` for
//! a [`Checkout`] under the request's `Idempotency-Key`, so no second checkout can order them
//! again. The hold learns its order from orders' answer or from `order.created`; it ends when the
//! order does: completed drops it (the lines are bought), cancelled puts its lines back.

use chrono::Duration;
use mongodb::bson;
use serde::{Deserialize, Serialize};
use storefront_events::{
    OrderId, ProductId, UserId,
    orders::{OrderState, PlacedOrder},
    products::LineQuantity,
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

/// How an order ended, for the lines its checkout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEnd {
    /// Bought: the held lines are gone for good.
    Completed,
    /// Not bought: the held lines go back into the cart.
    Cancelled,
}

/// Why a checkout holds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmptyCart;

impl CartDoc {
    /// The hold of checkout `key`: the one this key made before, or every line of the cart taken
    /// out into a new one at `now`. Holds that never learned their order in time go back first.
    pub fn hold(&mut self, key: &str, now: bson::DateTime) -> Result<Checkout, EmptyCart> {
        self.release_unplaced(now);
        if let Some(hold) = self.checkouts.iter().find(|c| c.key == key) {
            return Ok(hold.clone());
        }
        if self.items.is_empty() {
            return Err(EmptyCart);
        }
        let hold = Checkout {
            key: key.to_owned(),
            order_id: None,
            items: std::mem::take(&mut self.items),
            held_at: now,
        };
        self.checkouts.push(hold.clone());
        Ok(hold)
    }

    /// Puts the lines of checkout `key` back while no order holds them (orders refused them, or
    /// the cart did before asking). Whether it did.
    pub fn give_back_unplaced(&mut self, key: &str) -> bool {
        let unplaced = self
            .checkouts
            .iter()
            .any(|c| c.key == key && c.order_id.is_none());
        unplaced && self.release(key)
    }

    /// Order `order` was cancelled: its hold's lines go back into the cart. What did not fit
    /// (see [`CartDoc::put_back`]), or `None` when no hold is in that order.
    pub fn cancelled(&mut self, order: OrderId) -> Option<Vec<Item>> {
        let at = self
            .checkouts
            .iter()
            .position(|c| c.order_id == Some(order))?;
        let hold = self.checkouts.remove(at);
        Some(self.put_back(hold.items))
    }

    /// The hold of checkout `key` once orders answered `placed`: an open order is the hold's
    /// order; a completed one (a retry after the payment) keeps its lines out; a cancelled one,
    /// or another order (a key reused after its order ended, which answers that order), puts
    /// them back. A hold already gone (its order ended meanwhile) stays gone.
    pub fn placed(&mut self, key: &str, placed: &PlacedOrder) {
        let Some(hold) = self.checkouts.iter_mut().find(|c| c.key == key) else {
            return;
        };
        let in_this_order = hold.order_id == Some(placed.id);
        match placed.state {
            OrderState::Pending | OrderState::AwaitingPayment => {
                if hold.order_id.is_none() {
                    hold.order_id = Some(placed.id);
                }
            }
            OrderState::Completed if in_this_order => {
                self.checkouts.retain(|c| c.key != key);
            }
            _ => {
                self.release(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cart(items: &[(ProductId, i64)]) -> CartDoc {
        let mut cart = CartDoc::empty(UserId::new());
        cart.items = items
            .iter()
            .map(|&(product_id, quantity)| Item {
                product_id,
                quantity,
            })
            .collect();
        cart
    }

    fn placed(id: OrderId, state: OrderState) -> PlacedOrder {
        PlacedOrder { id, state }
    }

    #[test]
    fn a_checkout_takes_every_line_once_and_the_same_key_finds_its_hold() {
        let mug = ProductId::new();
        let mut cart = cart(&[(mug, 2)]);
        let now = bson::DateTime::now();
        let hold = cart.hold("k1", now).unwrap();
        assert_eq!(hold.items.len(), 1);
        assert!(cart.items.is_empty());
        assert_eq!(cart.hold("k1", now).unwrap(), hold);
        assert_eq!(cart.hold("k2", now), Err(EmptyCart));
        assert_eq!(cart.checkouts.len(), 1);
    }

    #[test]
    fn orders_answer_settles_the_hold() {
        let mug = ProductId::new();
        let now = bson::DateTime::now();
        let order = OrderId::new();

        let mut open = cart(&[(mug, 2)]);
        open.hold("k", now).unwrap();
        open.placed("k", &placed(order, OrderState::Pending));
        assert_eq!(open.checkouts[0].order_id, Some(order));
        assert!(!open.give_back_unplaced("k"), "an order holds the lines");
        assert_eq!(open.checkouts.len(), 1);

        // A retry after the payment: bought, the lines stay out.
        open.placed("k", &placed(order, OrderState::Completed));
        assert!(open.checkouts.is_empty());
        assert!(open.items.is_empty());

        // A key reused after its order ended: orders answers that order; these lines are back.
        let mut reused = cart(&[(mug, 2)]);
        reused.hold("k", now).unwrap();
        reused.placed("k", &placed(order, OrderState::Completed));
        assert!(reused.checkouts.is_empty());
        assert_eq!(reused.count(), 2);

        let mut cancelled = cart(&[(mug, 2)]);
        cancelled.hold("k", now).unwrap();
        cancelled.placed("k", &placed(order, OrderState::Cancelled));
        assert_eq!(cancelled.count(), 2);
    }

    #[test]
    fn a_cancelled_order_puts_its_hold_back_once() {
        let mug = ProductId::new();
        let order = OrderId::new();
        let mut cart = cart(&[(mug, 2)]);
        cart.hold("k", bson::DateTime::now()).unwrap();
        cart.placed("k", &placed(order, OrderState::AwaitingPayment));
        assert_eq!(cart.cancelled(order), Some(vec![]));
        assert_eq!(cart.count(), 2);
        assert_eq!(cart.cancelled(order), None, "a redelivery finds no hold");
    }

    #[test]
    fn refused_lines_go_back_and_a_stale_unplaced_hold_does_too() {
        let mug = ProductId::new();
        let mut cart = cart(&[(mug, 2)]);
        let then = bson::DateTime::from_millis(0);
        cart.hold("k", then).unwrap();
        assert!(cart.give_back_unplaced("k"));
        assert_eq!(cart.count(), 2);

        cart.hold("old", then).unwrap();
        assert_eq!(cart.count(), 0);
        assert!(cart.release_unplaced(bson::DateTime::now()));
        assert_eq!(cart.count(), 2);
    }

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
