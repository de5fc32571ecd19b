//! payments' hold on an order, and waiting for an order to change.

use mongodb::{ClientSession, bson, bson::doc, options::ReturnDocument};
use storefront_events::{OrderId, UserId};

use super::{OrderDoc, Store, StoreError, now};
use crate::domain::OrderState;

/// Why an order cannot be held for payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPayable {
    /// Stock is still being reserved: worth waiting for.
    Pending,
    Paid,
    Ended(String),
}

impl Store {
    /// Holds an order for payment for `ttl`: payments calls Stripe only with this hold, and a
    /// cancel or the expiry waits until it ends. Holding again extends it (payments' own claim
    /// keeps two payers of one order apart). Only the owner's open, unexpired order can be held.
    pub async fn hold_for_payment(
        &self,
        id: OrderId,
        user: UserId,
        ttl: std::time::Duration,
    ) -> Result<Result<OrderDoc, NotPayable>, StoreError> {
        // The order may leave `pending` between the conditional update and the read that says
        // why it did not match: then the update is tried again (it moves forward only once).
        for _ in 0..3 {
            if let Some(answer) = self.try_hold(id, user, ttl).await? {
                return Ok(answer);
            }
        }
        Ok(Err(NotPayable::Pending))
    }

    /// One try of [`Store::hold_for_payment`]; `None` when the order became payable as it was
    /// asked for (ask again).
    async fn try_hold(
        &self,
        id: OrderId,
        user: UserId,
        ttl: std::time::Duration,
    ) -> Result<Option<Result<OrderDoc, NotPayable>>, StoreError> {
        let now = now();
        let until = bson::DateTime::from_millis(now.timestamp_millis() + ttl.as_millis() as i64);
        let held = self
            .orders
            .find_one_and_update(
                doc! {
                    "_id": id.to_string(),
                    "user_id": user.to_string(),
                    "state": OrderState::AwaitingPayment.as_str(),
                    "expires_at": { "$gt": now },
                },
                doc! { "$set": { "paying_until": until } },
            )
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(order) = held {
            return Ok(Some(Ok(order)));
        }
        let order = self
            .get(id)
            .await?
            .filter(|order| order.user_id == user)
            .ok_or(StoreError::NotFound)?;
        Ok(Some(Err(match order.state {
            OrderState::Pending => NotPayable::Pending,
            OrderState::Completed => NotPayable::Paid,
            OrderState::Cancelled => NotPayable::Ended(format!(
                "the order is cancelled: {}",
                order.reason.unwrap_or_default()
            )),
            OrderState::AwaitingPayment if order.expires_at > now => return Ok(None),
            OrderState::AwaitingPayment => {
                NotPayable::Ended("the payment window expired".to_owned())
            }
        })))
    }

    /// Ends payments' hold (its attempt failed), so the customer can cancel at once.
    pub async fn release_hold(
        &self,
        session: &mut ClientSession,
        id: OrderId,
    ) -> Result<bool, StoreError> {
        let released = self
            .orders
            .update_one(
                doc! {
                    "_id": id.to_string(),
                    "state": OrderState::AwaitingPayment.as_str(),
                    "paying_until": { "$ne": null },
                },
                doc! { "$set": { "paying_until": null } },
            )
            .session(session)
            .await?;
        Ok(released.modified_count == 1)
    }

    /// Reads order `id` until `done` accepts it or `deadline` passes, waking only when it changes
    /// (see [`Changes`](crate::changes::Changes)). `None` when there is no such order.
    pub async fn wait_for(
        &self,
        id: OrderId,
        deadline: tokio::time::Instant,
        done: impl Fn(&OrderDoc) -> bool,
    ) -> Result<Option<OrderDoc>, StoreError> {
        self.changes
            .wait(
                id,
                deadline,
                || self.get(id),
                |order| order.as_ref().map_or(i64::MAX, |o| o.version),
                |order| order.as_ref().is_none_or(&done),
            )
            .await
    }
}
