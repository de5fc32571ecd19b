//! Reading an order, following it as it changes, and cancelling it: the caller's own order, or
//! any for an admin.

use std::time::Duration;

use storefront_events::OrderId;
use storefront_kit::{Error, auth::Claims};
use tokio::time::Instant;

use crate::{
    Inner,
    store::{OrderDoc, Step},
};

fn missing() -> Error {
    Error::NotFound("no such order".into())
}

/// Order `id` as `user` may see it: their own, or any for an admin. Anything else is not found,
/// never forbidden, so ids cannot be probed.
pub async fn visible(app: &Inner, user: &Claims, id: OrderId) -> Result<OrderDoc, Error> {
    match app.store.get(id).await? {
        Some(order) if order.user_id == user.sub || user.is_admin() => Ok(order),
        _ => Err(missing()),
    }
}

/// `order` once it changes past the version the caller has, waiting up to `wait`; as it is
/// when it did not change by then.
pub async fn next_version(app: &Inner, order: OrderDoc, wait: Duration) -> Result<OrderDoc, Error> {
    let seen = order.version;
    app.store
        .wait_for(order.id, Instant::now() + wait, |o| o.version != seen)
        .await?
        .ok_or_else(missing)
}

/// Cancels order `id` for `user` (its owner, or an admin): only before payment, and not while
/// payments holds it; its stock is released and the cart puts its lines back.
pub async fn cancel(app: &Inner, user: &Claims, id: OrderId) -> Result<OrderDoc, Error> {
    let order = visible(app, user, id).await?;
    let reason = if order.user_id == user.sub {
        "cancelled by the customer"
    } else {
        "cancelled by an admin"
    };
    let step = Step::Cancelled {
        reason: reason.into(),
    };
    Ok(app.store.advance(order.id, step).await?)
}
