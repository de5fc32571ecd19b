//! Many saga events applied in one transaction: what the inventory consumer does with the events
//! waiting in its lane when it is behind (`storefront_kit::kafka::EventHandler::handle_all`).
//!
//! The effect is that of `reserve_in` and `end_in` (`inventory.rs`, as `app::inventory::apply_in`
//! calls them) applied one
//! after another — the same reservation states, stock, ledger entries and events in the same order
//! — but every reservation and product is read once (two finds), decided in memory in event order,
//! and written once: a batch of ten orders costs about a dozen commands instead of sixty, and one
//! commit. Every write is guarded by what was read (the reservation's state, the product's
//! version), so a concurrent writer makes the batch fail as [`StoreError::Raced`], and the runner
//! applies its events one by one.

use std::collections::{BTreeSet, HashMap};
use storefront_events::{OrderId, ProductId};

use storefront_kit::mongo::update_each;

use super::*;
use crate::domain::{Ending, Hold, InventoryOp, Unheld, check_lines};

/// An order's reservation as the batch found and left it.
struct Tracked {
    found: Option<ReservationState>,
    now: Option<ReservationDoc>,
    changed: bool,
}

impl Tracked {
    fn state(&self) -> Option<ReservationState> {
        self.now.as_ref().map(|r| r.state)
    }

    fn set(&mut self, order_id: OrderId, state: ReservationState, lines: Vec<LineQuantity>) {
        self.now = Some(ReservationDoc {
            id: order_id.to_string(),
            state,
            lines,
            updated_at: now(),
        });
        self.changed = true;
    }
}

/// What the batch decided, to be written.
struct Plan {
    reservations: HashMap<OrderId, Tracked>,
    /// Each product as found (its version then) and as the batch leaves it.
    products: HashMap<ProductId, (i64, ProductDoc)>,
    ledger: Vec<LedgerEntry>,
    events: Vec<storefront_kit::outbox::Encoded>,
}

impl Store {
    /// Applies `ops` in order in a transaction of their own (what the consumer's batch does inside
    /// its transaction). Runs again when something changed under it.
    pub async fn apply_all(&self, ops: &[InventoryOp]) -> Result<(), StoreError> {
        retry_transient!(
            async {
                let mut session = self.mongo.begin().await?;
                self.apply_all_in(&mut session, ops).await?;
                self.outbox.commit(session).await?;
                Ok::<_, StoreError>(())
            }
            .await
        )
    }

    /// Applies `ops` in order inside the caller's transaction.
    pub async fn apply_all_in(
        &self,
        session: &mut ClientSession,
        ops: &[InventoryOp],
    ) -> Result<(), StoreError> {
        let order_ids: Vec<String> = ops
            .iter()
            .map(|op| op.order_id().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let found: Vec<ReservationDoc> = self
            .reservations
            .find(doc! { "_id": { "$in": &order_ids } })
            .session(&mut *session)
            .await?
            .stream(&mut *session)
            .try_collect()
            .await?;
        let mut product_ids = BTreeSet::new();
        for op in ops {
            if let InventoryOp::Reserve { lines, .. } = op {
                product_ids.extend(lines.iter().map(|l| l.product_id.to_string()));
            }
        }
        for reservation in &found {
            product_ids.extend(reservation.lines.iter().map(|l| l.product_id.to_string()));
        }
        let product_ids: Vec<String> = product_ids.into_iter().collect();
        let products: Vec<ProductDoc> = self
            .products
            .find(doc! { "_id": { "$in": &product_ids } })
            .session(&mut *session)
            .await?
            .stream(&mut *session)
            .try_collect()
            .await?;

        let mut plan = Plan {
            reservations: ops
                .iter()
                .map(|op| {
                    (
                        op.order_id(),
                        Tracked {
                            found: None,
                            now: None,
                            changed: false,
                        },
                    )
                })
                .collect(),
            products: products
                .into_iter()
                .map(|p| (p.id, (p.version, p)))
                .collect(),
            ledger: Vec::new(),
            events: Vec::new(),
        };
        for reservation in found {
            if let Some(tracked) = reservation
                .id
                .parse()
                .ok()
                .and_then(|id: OrderId| plan.reservations.get_mut(&id))
            {
                tracked.found = Some(reservation.state);
                tracked.now = Some(reservation);
            }
        }
        for op in ops {
            self.decide(&mut plan, op)?;
        }
        self.write(session, plan).await
    }

    /// One event's effect on the plan, as `reserve_in` or `end_in` would have it.
    fn decide(&self, plan: &mut Plan, op: &InventoryOp) -> Result<(), StoreError> {
        let order_id = op.order_id();
        let state = plan.reservations.get(&order_id).and_then(Tracked::state);
        let ending = match op {
            InventoryOp::Reserve { lines, .. } => {
                return self.decide_reserve(plan, order_id, lines, Hold::of(state));
            }
            InventoryOp::Release { .. } => Ending::Cancelled,
            InventoryOp::Sell { .. } => Ending::Completed,
        };
        let tracked = plan.reservations.get_mut(&order_id).expect("tracked");
        if state != Some(ReservationState::Reserved) {
            match ending.unheld(state) {
                Unheld::Nothing => {}
                Unheld::Remember(first) => tracked.set(order_id, first, Vec::new()),
                Unheld::Impossible(what) => match state {
                    Some(state) => tracing::error!(%order_id, ?state, "{what}"),
                    None => tracing::error!(%order_id, "{what}"),
                },
            }
            return Ok(());
        }
        let lines = tracked
            .now
            .as_ref()
            .map(|r| r.lines.clone())
            .unwrap_or_default();
        let (settled, movement) = ending.outcome();
        tracked.set(order_id, settled, lines.clone());
        for line in &lines {
            self.move_stock(plan, line.product_id, order_id, movement, |stock| {
                ending.settle(stock, line.quantity)
            })?;
        }
        match ending {
            Ending::Cancelled => tracing::info!(%order_id, "reservation released"),
            Ending::Completed => tracing::info!(%order_id, "reservation sold"),
        }
        Ok(())
    }

    fn decide_reserve(
        &self,
        plan: &mut Plan,
        order_id: OrderId,
        lines: &[LineQuantity],
        hold: Hold,
    ) -> Result<(), StoreError> {
        if hold == Hold::Nothing {
            return Ok(());
        }
        let available = |id: ProductId| match plan.products.get(&id) {
            Some((_, p)) if !p.deleted => p.stock.available,
            _ => 0,
        };
        let checked = check_lines(lines, available);
        let tracked = plan.reservations.get_mut(&order_id).expect("tracked");
        if let Err(short) = checked {
            if hold == Hold::SellAtOnce {
                tracing::error!(%order_id, ?short, "an order paid before it was reserved cannot be supplied; it needs a refund");
            }
            tracked.set(order_id, ReservationState::Rejected, lines.to_vec());
            tracing::info!(%order_id, ?short, "stock short; order rejected");
            plan.events
                .push(self.encode(rejected(order_id, lines, short))?);
            return Ok(());
        }
        let (state, movement) = hold.outcome();
        tracked.set(order_id, state, lines.to_vec());
        for line in lines {
            self.move_stock(plan, line.product_id, order_id, movement, |stock| {
                hold.take(stock, line.quantity);
                -line.quantity
            })?;
        }
        tracing::info!(%order_id, "stock reserved");
        plan.events.push(self.encode(reserved(order_id, lines))?);
        Ok(())
    }

    /// Moves one product's stock in the plan: a new version, a ledger entry and `stock.changed`.
    /// `change` moves the stock and answers the change of available stock the ledger records.
    fn move_stock(
        &self,
        plan: &mut Plan,
        product_id: ProductId,
        order_id: OrderId,
        movement: StockMovement,
        change: impl FnOnce(&mut Stock) -> i64,
    ) -> Result<(), StoreError> {
        let (_, product) = plan
            .products
            .get_mut(&product_id)
            .ok_or(StoreError::NotFound)?;
        let delta = change(&mut product.stock);
        product.version += 1;
        product.updated_at = now();
        let (entry, event) = movement_of(product, movement, delta, Some(order_id), None, None);
        plan.ledger.push(entry);
        plan.events.push(self.encode(event)?);
        Ok(())
    }

    fn encode<E: Event>(
        &self,
        event: Envelope<E>,
    ) -> Result<storefront_kit::outbox::Encoded, StoreError> {
        Ok(self.outbox.encode(event)?)
    }

    /// Writes what the plan changed, each write guarded by what was read: the reservations
    /// found and the products each in one `update` command of many statements
    /// (`storefront_kit::mongo::update_each`), the new reservations, the ledger and the outbox
    /// each in one insert — a handful of commands whatever the batch's size.
    async fn write(&self, session: &mut ClientSession, plan: Plan) -> Result<(), StoreError> {
        let encode = |value: &ReservationDoc| {
            // As the driver stores it, like `replace_one` would.
            Ok::<_, StoreError>(bson::to_raw_document_buf(value)?.to_document()?)
        };
        let mut inserts = Vec::new();
        let mut replaced = Vec::new();
        for tracked in plan.reservations.into_values() {
            let (true, Some(reservation)) = (tracked.changed, tracked.now) else {
                continue;
            };
            match tracked.found {
                None => inserts.push(reservation),
                Some(found) => replaced.push((
                    doc! { "_id": &reservation.id, "state": state_bson(found)? },
                    encode(&reservation)?,
                )),
            }
        }
        let expected = replaced.len() as u64;
        if update_each(&self.reservations, replaced, session).await? != expected {
            return Err(StoreError::Raced);
        }
        if !inserts.is_empty() {
            // A reservation another writer inserted meanwhile is a duplicate key: the batch fails
            // and its events are applied one by one.
            self.reservations
                .insert_many(&inserts)
                .session(&mut *session)
                .await?;
        }
        let mut stock = Vec::new();
        for (before, product) in plan.products.values() {
            if product.version != *before {
                stock.push((
                    doc! { "_id": product.id.to_string(), "version": before },
                    stock_set(product)?,
                ));
            }
        }
        let expected = stock.len() as u64;
        if update_each(&self.products, stock, session).await? != expected {
            return Err(StoreError::Raced);
        }
        if !plan.ledger.is_empty() {
            self.ledger
                .insert_many(&plan.ledger)
                .session(&mut *session)
                .await?;
        }
        Ok(self.outbox.append_all(session, plan.events).await?)
    }
}
