//! Holding an order for payment (payments asks before it charges): the owner's order, payable,
//! its stock waited for while it is still being reserved.

use std::time::Duration;

use storefront_events::{OrderId, UserId};
use storefront_kit::Error;
use tokio::time::Instant;

use crate::{
    Inner,
    domain::OrderState,
    store::{NotPayable, OrderDoc, StoreError},
};

/// Holds `owner`'s order `id` for payment (for the shop's payment hold) and answers it, with the
/// total to charge. An order whose stock is still being reserved is waited for up to `wait`.
/// 409 `already-paid` for a completed order, 409 `order-not-payable` for one that ended or is
/// still pending after the wait; anyone else's order is not found.
pub async fn hold_for_payment(
    app: &Inner,
    owner: UserId,
    id: OrderId,
    wait: Duration,
) -> Result<OrderDoc, Error> {
    let missing = || Error::NotFound("no such order".into());
    let deadline = Instant::now() + wait;
    match app.store.get(id).await? {
        Some(order) if order.user_id == owner => {}
        _ => return Err(missing()),
    }
    loop {
        match app
            .store
            .hold_for_payment(id, owner, app.payment_hold)
            .await
        {
            Ok(Ok(order)) => return Ok(order),
            Ok(Err(NotPayable::Pending)) if Instant::now() < deadline => {
                app.store
                    .wait_for(id, deadline, |o| o.state != OrderState::Pending)
                    .await?;
            }
            Ok(Err(NotPayable::Pending)) => {
                return Err(Error::Conflict {
                    kind: "order-not-payable",
                    detail: "the order's stock is still being reserved; try again in a moment"
                        .into(),
                });
            }
            Ok(Err(NotPayable::Paid)) => {
                return Err(Error::Conflict {
                    kind: "already-paid",
                    detail: "this order is paid already".into(),
                });
            }
            Ok(Err(NotPayable::Ended(detail))) => {
                return Err(Error::Conflict {
                    kind: "order-not-payable",
                    detail,
                });
            }
            Err(StoreError::NotFound) => return Err(missing()),
            Err(e) => return Err(e.into()),
        }
    }
}
