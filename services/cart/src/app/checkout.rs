//! Checking a cart out, and what its order's events do to the lines it holds. The cart's lines
//! are *held* first (they leave the cart in one version-guarded write, so nothing can order them
//! twice), then orders places them as an order (priced by orders, never by the cart) and its
//! answer settles the hold. The same key again is the same checkout: its hold, and orders' same
//! order.
//!
//! What becomes of the held lines: a refusal of orders (4xx) puts them back at once; an order
//! that completes keeps them out; an order that is cancelled puts them back (cart consumes
//! `order.cancelled`). When orders does not answer they stay held for this key (retry with it);
//! `order.created` tells the hold its order even then, and a hold that never learns one gives
//! its lines back after [`UNPLACED_HOLD_MINUTES`](crate::store::UNPLACED_HOLD_MINUTES).

use storefront_events::{
    OrderId, ProductId, UserId,
    orders::{OrderState, PlaceOrder, PlacedOrder},
};
use storefront_kit::{Error, auth::ActingUser, validate::Fields};

use crate::{
    Inner,
    domain::{Checkout, EmptyCart, Item, OrderEnd},
    orders::Answer,
    store::{Store, WriteError},
};

/// Checks out `user`'s cart under idempotency `key` and answers orders' answer as it came.
pub async fn checkout(app: &Inner, user: &ActingUser, key: &str) -> Result<Answer, Error> {
    let customer = user.claims.sub;
    let hold = hold(app, customer, key).await?;
    if hold.order_id.is_none() {
        refuse_what_cannot_be_ordered(app, customer, key, &hold.items).await?;
    }
    let placing = PlaceOrder {
        lines: hold.items.iter().map(Item::line).collect(),
    };
    let answer = app.orders.place(&user.token, key, &placing).await?;
    if answer.status.is_success() {
        let placed: PlacedOrder = serde_json::from_slice(&answer.body).map_err(Error::internal)?;
        settle(app, customer, key, placed).await?;
    } else if answer.status.is_client_error() && hold.order_id.is_none() {
        // orders refused: no order holds these lines.
        give_back_unplaced(app, customer, key).await?;
    }
    Ok(answer)
}

/// The hold of `key` (see [`CartDoc::hold`](crate::domain::CartDoc::hold)); 422 for an empty
/// cart.
async fn hold(app: &Inner, customer: UserId, key: &str) -> Result<Checkout, Error> {
    let (hold, _) = app
        .store
        .update(customer, |cart| {
            cart.hold(key, mongodb::bson::DateTime::now())
                .map_err(|EmptyCart| Error::field("items", "the cart is empty"))
        })
        .await?;
    Ok(hold)
}

/// A line the cart itself shows as not orderable (the product is gone, or less is available than
/// it asks for) is refused up front, 422 by its line, and the held lines go back into the cart:
/// no order is placed only to be cancelled a moment later. The saga still decides for what passes
/// (this is the cart's copy of the stock, a moment old).
async fn refuse_what_cannot_be_ordered(
    app: &Inner,
    customer: UserId,
    key: &str,
    items: &[Item],
) -> Result<(), Error> {
    let ids: Vec<ProductId> = items.iter().map(|i| i.product_id).collect();
    let known = app.store.products(&ids).await?;
    let mut fields = Fields::default();
    for (index, item) in items.iter().enumerate() {
        match known.iter().find(|p| p.id == item.product_id && !p.deleted) {
            None => fields.add(
                format!("items[{index}]"),
                format!("product {} is no longer sold", item.product_id),
            ),
            Some(p) if p.available < item.quantity => fields.add(
                format!("items[{index}].quantity"),
                format!(
                    "only {} of {} available; lower the quantity",
                    p.available.max(0),
                    p.title
                ),
            ),
            Some(_) => {}
        }
    }
    let Err(refused) = fields.finish() else {
        return Ok(());
    };
    give_back_unplaced(app, customer, key).await?;
    Err(refused)
}

/// Puts a hold's lines back into the cart while no order holds them (refused before or by
/// orders).
async fn give_back_unplaced(app: &Inner, customer: UserId, key: &str) -> Result<(), Error> {
    app.store
        .update(customer, |cart| {
            cart.give_back_unplaced(key);
            Ok::<_, Error>(())
        })
        .await?;
    Ok(())
}

/// The hold of `key` after orders placed (or gave back) its order (see
/// [`CartDoc::placed`](crate::domain::CartDoc::placed)). An open order, the usual answer, only
/// tells a hold with no order yet its order: the one targeted update that `order.created` makes
/// ([`Store::placed`]), not a read and a write of the whole cart.
async fn settle(
    app: &Inner,
    customer: UserId,
    key: &str,
    placed: PlacedOrder,
) -> Result<(), Error> {
    if matches!(
        placed.state,
        OrderState::Pending | OrderState::AwaitingPayment
    ) {
        return match app.store.placed(customer, key, placed.id).await {
            Ok(_) => Ok(()),
            Err(WriteError::Mongo(e)) => Err(e.into()),
            // `placed` is one update; it does not race.
            Err(e @ WriteError::Raced) => Err(Error::internal(e)),
        };
    }
    app.store
        .update(customer, |cart| {
            cart.placed(key, &placed);
            Ok::<_, Error>(())
        })
        .await?;
    Ok(())
}

/// `order.created` with a checkout's key: the hold learns its order (when orders' answer did
/// not reach the cart). Whether it did.
pub async fn order_placed(
    store: &Store,
    customer: UserId,
    key: &str,
    order_id: OrderId,
) -> Result<bool, WriteError> {
    let learned = store.placed(customer, key, order_id).await?;
    if learned {
        tracing::info!(%order_id, "a checkout's hold learned its order");
    }
    Ok(learned)
}

/// The order of a checkout ended: its held lines are bought, or go back into the cart
/// ([`CartDoc::cancelled`](crate::domain::CartDoc::cancelled)). Whether a hold was in that order.
pub async fn order_ended(
    store: &Store,
    customer: UserId,
    order_id: OrderId,
    end: OrderEnd,
) -> Result<bool, WriteError> {
    let settled = store.ended(customer, order_id, end).await?;
    match end {
        OrderEnd::Completed if settled => tracing::info!(%order_id, "held lines bought"),
        OrderEnd::Cancelled if settled => {
            tracing::info!(%order_id, "held lines went back into the cart")
        }
        _ => {}
    }
    Ok(settled)
}
