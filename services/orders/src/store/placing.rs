//! Placing an order: its number, its idempotency key, the order and `order.created` in one
//! transaction.

use mongodb::bson::doc;
use storefront_events::UserId;
use storefront_kit::{mongo::is_duplicate_key, retry_transient};

use super::{OrderDoc, Store, StoreError, now};

/// Order numbers are taken from one counter this many at a time: one write per this many orders,
/// not one per order. A replica that stops leaves the rest of its block unused (numbers are
/// unique and grow, but not every number is used); two replicas hand out numbers of two blocks.
const NUMBER_BLOCK: i64 = 20;

/// The first order number is the one after this (shops start a little above 1).
const NUMBERS_AFTER: i64 = 1000;

impl Store {
    /// A new order's number: unique in the shop (one counter document, taken in blocks of
    /// `NUMBER_BLOCK` with an atomic `$inc`).
    pub async fn next_number(&self) -> Result<i64, StoreError> {
        let mut numbers = self.numbers.lock().await;
        if numbers.is_empty() {
            let counter = self
                .counters
                .find_one_and_update(
                    doc! { "_id": "order_number" },
                    doc! { "$inc": { "value": NUMBER_BLOCK } },
                )
                .upsert(true)
                .return_document(mongodb::options::ReturnDocument::After)
                .await?
                .ok_or_else(|| StoreError::Counter("missing after an upsert".into()))?;
            let end = counter
                .get_i64("value")
                .or_else(|_| counter.get_i32("value").map(i64::from))
                .map_err(|e| StoreError::Counter(e.to_string()))?;
            *numbers = NUMBERS_AFTER + end - NUMBER_BLOCK + 1..NUMBERS_AFTER + end + 1;
        }
        let number = numbers.start;
        numbers.start += 1;
        Ok(number)
    }

    /// Places `order` (pending, version 1) and publishes `order.created`. With an idempotency
    /// key, a second call with the same key returns the first order instead; with the same key
    /// and different lines it is refused. Returns the order and whether it is new.
    pub async fn place(
        &self,
        order: &OrderDoc,
        key: Option<(&str, &str)>,
    ) -> Result<(OrderDoc, bool), StoreError> {
        retry_transient!(self.place_once(order, key).await)
    }

    async fn place_once(
        &self,
        order: &OrderDoc,
        key: Option<(&str, &str)>,
    ) -> Result<(OrderDoc, bool), StoreError> {
        let mut session = self.mongo.begin().await?;
        if let Some((key, fingerprint)) = key {
            let record = doc! {
                "_id": format!("{}:{key}", order.user_id),
                "order_id": order.id.to_string(),
                "fingerprint": fingerprint,
                "created_at": now(),
            };
            match self.keys.insert_one(record).session(&mut session).await {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => {
                    let _ = session.abort_transaction().await;
                    return self.replay(order.user_id, key, fingerprint).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.orders.insert_one(order).session(&mut session).await?;
        self.outbox
            .append(&mut session, order.created_event())
            .await?;
        self.outbox.commit(session).await?;
        Ok((order.clone(), true))
    }

    async fn replay(
        &self,
        user_id: UserId,
        key: &str,
        fingerprint: &str,
    ) -> Result<(OrderDoc, bool), StoreError> {
        let record = self
            .keys
            .find_one(doc! { "_id": format!("{user_id}:{key}") })
            .await?
            .ok_or(StoreError::Raced)?;
        if record.get_str("fingerprint").unwrap_or_default() != fingerprint {
            return Err(StoreError::KeyReused);
        }
        let id = record.get_str("order_id").unwrap_or_default();
        let order = self
            .orders
            .find_one(doc! { "_id": id })
            .await?
            .ok_or(StoreError::Raced)?;
        Ok((order, false))
    }
}
