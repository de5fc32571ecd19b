//! An order's reservation: what products holds for an order through the checkout saga
//! (docs/saga.md) and the rules that move it. Pure: the store reads the reservation and the
//! products, asks these rules what to do, and writes what they answer — one event at a time
//! (`store/inventory.rs`) or a batch decided in memory (`store/batch.rs`), the same way.
//!
//! Events of one order arrive in order, but `order.cancelled` or `order.completed` can reach
//! products before the `order.created` they follow (different partitions before a replay, a
//! redelivery): `CancelledFirst` and `PaidFirst` remember such an end so the late `order.created`
//! does the right thing instead of holding stock for an order that is already over.

use serde::{Deserialize, Serialize};
use storefront_events::{
    OrderId, ProductId,
    products::{LineQuantity, ShortLine, Stock, StockMovement},
};

/// One saga event for the inventory.
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryOp {
    /// `order.created`: hold every line or none (lines merged, one per product).
    Reserve {
        order_id: OrderId,
        lines: Vec<LineQuantity>,
    },
    /// `order.cancelled`: the held stock is available again.
    Release { order_id: OrderId },
    /// `order.completed`: the held stock is sold.
    Sell { order_id: OrderId },
}

impl InventoryOp {
    pub fn order_id(&self) -> OrderId {
        match self {
            InventoryOp::Reserve { order_id, .. }
            | InventoryOp::Release { order_id }
            | InventoryOp::Sell { order_id } => *order_id,
        }
    }
}

/// Where an order's reservation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Every line is held (taken from available, counted as reserved).
    Reserved,
    /// Nothing is held: a line was short or the order had none.
    Rejected,
    /// The order ended unpaid; what it held is available again.
    Released,
    /// The order was paid; what it held is sold.
    Sold,
    /// `order.cancelled` came before `order.created`: nothing will be held.
    CancelledFirst,
    /// `order.completed` came before `order.created`: the lines are sold at once.
    PaidFirst,
}

/// What `order.created` does, given the order's reservation as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// No reservation yet (the usual case): hold every line or none.
    Reserve,
    /// The order was completed before it was created here: sell every line at once.
    SellAtOnce,
    /// Handled already (a redelivery) or over already (`CancelledFirst`).
    Nothing,
}

impl Hold {
    pub fn of(found: Option<ReservationState>) -> Hold {
        match found {
            None => Hold::Reserve,
            Some(ReservationState::PaidFirst) => Hold::SellAtOnce,
            Some(_) => Hold::Nothing,
        }
    }

    /// The state an order whose every line could be held is left in, and the movement each
    /// product's ledger records.
    pub fn outcome(self) -> (ReservationState, StockMovement) {
        match self {
            Hold::SellAtOnce => (ReservationState::Sold, StockMovement::Sold),
            Hold::Reserve | Hold::Nothing => (ReservationState::Reserved, StockMovement::Reserved),
        }
    }

    /// Takes `quantity` of a product out of available: reserved, or sold at once.
    pub fn take(self, stock: &mut Stock, quantity: i64) {
        stock.available -= quantity;
        match self {
            Hold::SellAtOnce => stock.sold += quantity,
            Hold::Reserve | Hold::Nothing => stock.reserved += quantity,
        }
    }
}

/// The lines of an order that cannot be held, given what each product has available (0 for a
/// product that is gone or deleted). `Err` with the short lines — none for an order with no lines
/// at all — when the order is rejected; `Ok` when every line can be held.
pub fn check_lines(
    lines: &[LineQuantity],
    available: impl Fn(ProductId) -> i64,
) -> Result<(), Vec<ShortLine>> {
    let short: Vec<ShortLine> = lines
        .iter()
        .filter_map(|line| {
            let available = available(line.product_id);
            (available < line.quantity).then_some(ShortLine {
                product_id: line.product_id,
                requested: line.quantity,
                available,
            })
        })
        .collect();
    if lines.is_empty() || !short.is_empty() {
        return Err(short);
    }
    Ok(())
}

/// `inventory.rejected`'s reason, for the customer.
pub fn rejection_reason(lines: &[LineQuantity], short: &[ShortLine]) -> String {
    match short.len() {
        _ if lines.is_empty() => "the order has no valid lines".to_owned(),
        1 => "not enough stock for 1 item".to_owned(),
        n => format!("not enough stock for {n} items"),
    }
}

/// How an order ended: `order.cancelled` (unpaid, or expired) or `order.completed` (paid and
/// kept by orders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Cancelled,
    Completed,
}

/// What an order's end does to a reservation that was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unheld {
    /// Nothing to do: it is settled already, or was never held (rejected, cancelled first).
    Nothing,
    /// No reservation yet: remember the end for the `order.created` still to come.
    Remember(ReservationState),
    /// A sequence orders never produces (completing a released order, cancelling a completed
    /// one): nothing is moved, and it is logged as the defect it is.
    Impossible(&'static str),
}

impl Ending {
    /// The state a held reservation moves to, and the movement each product's ledger records.
    pub fn outcome(self) -> (ReservationState, StockMovement) {
        match self {
            Ending::Cancelled => (ReservationState::Released, StockMovement::Released),
            Ending::Completed => (ReservationState::Sold, StockMovement::Sold),
        }
    }

    /// Settles `quantity` held of a product: back to available, or sold. Answers the change of
    /// available stock the ledger records.
    pub fn settle(self, stock: &mut Stock, quantity: i64) -> i64 {
        stock.reserved -= quantity;
        match self {
            Ending::Cancelled => {
                stock.available += quantity;
                quantity
            }
            Ending::Completed => {
                stock.sold += quantity;
                0
            }
        }
    }

    /// What this end does to a reservation found in `found` (`None`: none yet) that is not
    /// `Reserved` (a held one is settled).
    pub fn unheld(self, found: Option<ReservationState>) -> Unheld {
        use ReservationState::*;
        match (self, found) {
            (Ending::Cancelled, None) => Unheld::Remember(CancelledFirst),
            (Ending::Completed, None) => Unheld::Remember(PaidFirst),
            (Ending::Cancelled, Some(PaidFirst)) => Unheld::Impossible(
                "an order was cancelled after it was completed; orders never does that",
            ),
            (Ending::Completed, Some(Released | Rejected)) => Unheld::Impossible(
                "an order completed whose stock is not held; orders never does that",
            ),
            (_, Some(_)) => Unheld::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationState::*;

    fn line(product_id: ProductId, quantity: i64) -> LineQuantity {
        LineQuantity {
            product_id,
            quantity,
        }
    }

    #[test]
    fn order_created_holds_a_new_order_sells_a_paid_one_and_ignores_the_rest() {
        assert_eq!(Hold::of(None), Hold::Reserve);
        assert_eq!(Hold::of(Some(PaidFirst)), Hold::SellAtOnce);
        for handled in [Reserved, Rejected, Released, Sold, CancelledFirst] {
            assert_eq!(Hold::of(Some(handled)), Hold::Nothing, "{handled:?}");
        }
        assert_eq!(Hold::Reserve.outcome(), (Reserved, StockMovement::Reserved));
        assert_eq!(Hold::SellAtOnce.outcome(), (Sold, StockMovement::Sold));
    }

    #[test]
    fn holding_moves_stock_out_of_available() {
        let mut stock = Stock {
            available: 5,
            reserved: 1,
            sold: 0,
        };
        Hold::Reserve.take(&mut stock, 2);
        assert_eq!((stock.available, stock.reserved, stock.sold), (3, 3, 0));
        Hold::SellAtOnce.take(&mut stock, 3);
        assert_eq!((stock.available, stock.reserved, stock.sold), (0, 3, 3));
    }

    #[test]
    fn every_line_or_none() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let available = |id: ProductId| if id == a { 3 } else { 1 };
        assert_eq!(check_lines(&[line(a, 3), line(b, 1)], available), Ok(()));
        let short = check_lines(&[line(a, 4), line(b, 1)], available).unwrap_err();
        assert_eq!(
            short,
            vec![ShortLine {
                product_id: a,
                requested: 4,
                available: 3
            }]
        );
        assert_eq!(
            rejection_reason(&[line(a, 4)], &short),
            "not enough stock for 1 item"
        );
        let both = check_lines(&[line(a, 9), line(b, 2)], available).unwrap_err();
        assert_eq!(
            rejection_reason(&[line(a, 9), line(b, 2)], &both),
            "not enough stock for 2 items"
        );
        // No lines at all is a rejection with nothing short.
        assert_eq!(check_lines(&[], available), Err(Vec::new()));
        assert_eq!(rejection_reason(&[], &[]), "the order has no valid lines");
    }

    #[test]
    fn an_end_settles_what_is_held() {
        let mut stock = Stock {
            available: 0,
            reserved: 5,
            sold: 0,
        };
        assert_eq!(Ending::Cancelled.settle(&mut stock, 2), 2);
        assert_eq!((stock.available, stock.reserved, stock.sold), (2, 3, 0));
        assert_eq!(Ending::Completed.settle(&mut stock, 3), 0);
        assert_eq!((stock.available, stock.reserved, stock.sold), (2, 0, 3));
        assert_eq!(
            Ending::Cancelled.outcome(),
            (Released, StockMovement::Released)
        );
        assert_eq!(Ending::Completed.outcome(), (Sold, StockMovement::Sold));
    }

    #[test]
    fn an_end_before_the_order_is_remembered_and_impossible_ones_are_named() {
        assert_eq!(
            Ending::Cancelled.unheld(None),
            Unheld::Remember(CancelledFirst)
        );
        assert_eq!(Ending::Completed.unheld(None), Unheld::Remember(PaidFirst));
        assert!(matches!(
            Ending::Cancelled.unheld(Some(PaidFirst)),
            Unheld::Impossible(_)
        ));
        for state in [Released, Rejected] {
            assert!(matches!(
                Ending::Completed.unheld(Some(state)),
                Unheld::Impossible(_)
            ));
        }
        // Settled already, or never held: a redelivery changes nothing.
        for state in [Rejected, Released, Sold, CancelledFirst] {
            assert_eq!(
                Ending::Cancelled.unheld(Some(state)),
                Unheld::Nothing,
                "{state:?}"
            );
        }
        for state in [Sold, CancelledFirst, PaidFirst] {
            assert_eq!(
                Ending::Completed.unheld(Some(state)),
                Unheld::Nothing,
                "{state:?}"
            );
        }
    }
}
