//! The stock's side of the database: the ledger of every movement, and the reservations the
//! checkout saga asks for (docs/saga.md), one record per order.

use super::*;
use crate::domain::{Ending, Hold, Unheld, check_lines, rejection_reason};
use storefront_events::{OrderId, ProductId};

impl Store {
    /// Writes one stock movement to the ledger and publishes `stock.changed` for `product` (as it
    /// is after the movement).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record(
        &self,
        session: &mut ClientSession,
        product: &ProductDoc,
        movement: StockMovement,
        delta: i64,
        order_id: Option<OrderId>,
        reason: Option<String>,
        actor: Option<String>,
    ) -> Result<(), StoreError> {
        let (entry, event) = movement_of(product, movement, delta, order_id, reason, actor);
        self.ledger
            .insert_one(&entry)
            .session(&mut *session)
            .await?;
        Ok(self.outbox.append(session, event).await?)
    }

    /// The newest ledger entries of a product, newest first.
    pub async fn ledger(&self, id: ProductId, limit: i64) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(self
            .ledger
            .find(doc! { "product_id": id.to_string() })
            .sort(doc! { "_id": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Reserves every line of an order in its own transaction (what the `order.created` handler
    /// does inside the consumer's). Runs again when a product changed under it.
    pub async fn reserve(
        &self,
        order_id: OrderId,
        lines: &[LineQuantity],
    ) -> Result<Reservation, StoreError> {
        retry_transient!(
            async {
                let mut session = self.mongo.begin().await?;
                let outcome = self.reserve_in(&mut session, order_id, lines).await?;
                self.outbox.commit(session).await?;
                Ok::<_, StoreError>(outcome)
            }
            .await
        )
    }
}

/// A ledger entry for one stock movement of `product` (as it is after the movement), and the
/// `stock.changed` event that publishes it.
pub(super) fn movement_of(
    product: &ProductDoc,
    movement: StockMovement,
    delta: i64,
    order_id: Option<OrderId>,
    reason: Option<String>,
    actor: Option<String>,
) -> (LedgerEntry, Envelope<StockChanged>) {
    let entry = LedgerEntry::new(product, movement, delta, order_id, reason.clone(), actor);
    let event = Envelope::new(
        SOURCE,
        product.id,
        product.version as u64,
        StockChanged {
            product_id: product.id,
            movement,
            delta,
            stock: product.stock,
            order_id,
            reason,
        },
    );
    (entry, event)
}

/// `inventory.rejected` for an order whose lines cannot be held.
pub(super) fn rejected(
    order_id: OrderId,
    lines: &[LineQuantity],
    short: Vec<ShortLine>,
) -> Envelope<InventoryRejected> {
    let reason = rejection_reason(lines, &short);
    Envelope::new(
        SOURCE,
        order_id.to_string(),
        1,
        InventoryRejected {
            order_id,
            reason,
            short,
        },
    )
}

/// `inventory.reserved` for an order whose every line is held.
pub(super) fn reserved(order_id: OrderId, lines: &[LineQuantity]) -> Envelope<InventoryReserved> {
    Envelope::new(
        SOURCE,
        order_id.to_string(),
        1,
        InventoryReserved {
            order_id,
            lines: lines.to_vec(),
        },
    )
}

/// The update that writes `product`'s stock, version and time (guarded by the caller's filter).
pub(super) fn stock_set(product: &ProductDoc) -> Result<Document, StoreError> {
    Ok(doc! { "$set": {
        "stock": bson::to_bson(&product.stock)?,
        "version": product.version,
        "updated_at": product.updated_at,
    } })
}

pub(super) fn state_bson(state: ReservationState) -> Result<bson::Bson, StoreError> {
    Ok(bson::to_bson(&state)?)
}

impl Store {
    async fn reservation(
        &self,
        session: &mut ClientSession,
        order_id: OrderId,
    ) -> Result<Option<ReservationDoc>, StoreError> {
        Ok(self
            .reservations
            .find_one(doc! { "_id": order_id.to_string() })
            .session(session)
            .await?)
    }

    async fn set_reservation(
        &self,
        session: &mut ClientSession,
        order_id: OrderId,
        state: ReservationState,
        lines: &[LineQuantity],
    ) -> Result<(), StoreError> {
        let record = ReservationDoc {
            id: order_id.to_string(),
            state,
            lines: lines.to_vec(),
            updated_at: now(),
        };
        self.reservations
            .replace_one(doc! { "_id": &record.id }, &record)
            .upsert(true)
            .session(session)
            .await?;
        Ok(())
    }

    /// Saga step 2: hold every line or none. Lines must be merged (one per product, sorted); no
    /// lines at all is a rejection.
    pub async fn reserve_in(
        &self,
        session: &mut ClientSession,
        order_id: OrderId,
        lines: &[LineQuantity],
    ) -> Result<Reservation, StoreError> {
        // The reservation is written first, as held, in one command that also says whether there
        // was one: nothing (the usual case) or an order that was paid first.
        let mut fresh = bson::to_raw_document_buf(&ReservationDoc {
            id: order_id.to_string(),
            state: ReservationState::Reserved,
            lines: lines.to_vec(),
            updated_at: now(),
        })?
        .to_document()?;
        // As the driver would store it, less the id the filter gives.
        fresh.remove("_id");
        let before = self
            .reservations
            .find_one_and_update(
                doc! { "_id": order_id.to_string() },
                doc! { "$setOnInsert": fresh },
            )
            .upsert(true)
            .session(&mut *session)
            .await?;
        let hold = Hold::of(before.map(|r| r.state));
        if hold == Hold::Nothing {
            return Ok(Reservation::Unchanged);
        }
        let ids: Vec<String> = lines.iter().map(|l| l.product_id.to_string()).collect();
        let found: Vec<ProductDoc> = self
            .products
            .find(doc! { "_id": { "$in": &ids } })
            .session(&mut *session)
            .await?
            .stream(session)
            .try_collect()
            .await?;
        let product = |id: ProductId| found.iter().find(|p| p.id == id && !p.deleted);
        if let Err(short) = check_lines(lines, |id| product(id).map_or(0, |p| p.stock.available)) {
            if hold == Hold::SellAtOnce {
                tracing::error!(%order_id, ?short, "an order paid before it was reserved cannot be supplied; it needs a refund");
            }
            self.set_reservation(session, order_id, ReservationState::Rejected, lines)
                .await?;
            self.outbox
                .append(session, rejected(order_id, lines, short.clone()))
                .await?;
            return Ok(Reservation::Rejected(short));
        }
        let (state, movement) = hold.outcome();
        for line in lines {
            let quantity = line.quantity;
            let mut product = product(line.product_id)
                .cloned()
                .ok_or(StoreError::NotFound)?;
            let before = product.version;
            hold.take(&mut product.stock, quantity);
            product.version += 1;
            product.updated_at = now();
            self.write_stock(session, &product, before).await?;
            self.record(
                session,
                &product,
                movement,
                -quantity,
                Some(order_id),
                None,
                None,
            )
            .await?;
        }
        if hold == Hold::SellAtOnce {
            self.set_reservation(session, order_id, state, lines)
                .await?;
        }
        self.outbox
            .append(session, reserved(order_id, lines))
            .await?;
        Ok(Reservation::Reserved)
    }

    /// Writes `product`'s stock and version if it is still at version `before`.
    async fn write_stock(
        &self,
        session: &mut ClientSession,
        product: &ProductDoc,
        before: i64,
    ) -> Result<(), StoreError> {
        let written = self
            .products
            .update_one(
                doc! { "_id": product.id.to_string(), "version": before },
                stock_set(product)?,
            )
            .session(session)
            .await?;
        if written.matched_count == 0 {
            return Err(StoreError::Raced);
        }
        Ok(())
    }

    /// Settles every line of a held order as `ending` has it: back to available, or sold.
    async fn settle(
        &self,
        session: &mut ClientSession,
        order_id: OrderId,
        lines: &[LineQuantity],
        ending: Ending,
    ) -> Result<(), StoreError> {
        let (_, movement) = ending.outcome();
        for line in lines {
            // The rule applied to nothing gives the increments.
            let mut change = Stock {
                available: 0,
                reserved: 0,
                sold: 0,
            };
            let delta = ending.settle(&mut change, line.quantity);
            let inc = doc! {
                "stock.available": change.available,
                "stock.reserved": change.reserved,
                "stock.sold": change.sold,
                "version": 1_i64,
            };
            // One command: the increments, and the product as they left it for the ledger and
            // `stock.changed` (the transaction makes a concurrent writer conflict, not interleave).
            let product = self
                .products
                .find_one_and_update(
                    doc! { "_id": line.product_id.to_string() },
                    doc! { "$inc": inc, "$set": { "updated_at": now() } },
                )
                .return_document(ReturnDocument::After)
                .session(&mut *session)
                .await?
                .ok_or(StoreError::NotFound)?;
            self.record(
                session,
                &product,
                movement,
                delta,
                Some(order_id),
                None,
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Moves the order's reservation from `Reserved` to `to` in one command, answering its lines;
    /// `None` when it is not reserved (then read it to see why).
    async fn take_reserved(
        &self,
        session: &mut ClientSession,
        order_id: OrderId,
        to: ReservationState,
    ) -> Result<Option<ReservationDoc>, StoreError> {
        let reserved = state_bson(ReservationState::Reserved)?;
        Ok(self
            .reservations
            .find_one_and_update(
                doc! { "_id": order_id.to_string(), "state": reserved },
                doc! { "$set": { "state": state_bson(to)?, "updated_at": now() } },
            )
            .session(session)
            .await?)
    }

    /// Saga steps 5 and 6: an order ended — completed (paid, and orders kept the money), its held
    /// stock is sold; cancelled, it is available again. `true` when held stock was settled.
    pub async fn end_in(
        &self,
        session: &mut ClientSession,
        order_id: OrderId,
        ending: Ending,
    ) -> Result<bool, StoreError> {
        let (settled, _) = ending.outcome();
        if let Some(r) = self.take_reserved(session, order_id, settled).await? {
            self.settle(session, order_id, &r.lines, ending).await?;
            return Ok(true);
        }
        let found = self.reservation(session, order_id).await?.map(|r| r.state);
        match ending.unheld(found) {
            Unheld::Nothing => {}
            Unheld::Remember(first) => {
                self.set_reservation(session, order_id, first, &[]).await?;
            }
            Unheld::Impossible(what) => match found {
                Some(state) => tracing::error!(%order_id, ?state, "{what}"),
                None => tracing::error!(%order_id, "{what}"),
            },
        }
        Ok(false)
    }

    pub async fn reservation_state(
        &self,
        order_id: OrderId,
    ) -> Result<Option<ReservationState>, StoreError> {
        Ok(self
            .reservations
            .find_one(doc! { "_id": order_id.to_string() })
            .await?
            .map(|r| r.state))
    }
}
