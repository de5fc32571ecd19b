//! docs/architecture.md §6: `pending → awaiting_payment → completed`, and `cancelled` from either
//! of the first two. Every transition is a method that returns the next state or why it cannot
//! happen; nothing else changes a state.

use serde::{Deserialize, Serialize};

/// Where an order is in its life (docs/architecture.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Placed; waiting for inventory to hold its lines.
    Pending,
    /// Every line is held; the customer can pay until the order expires.
    AwaitingPayment,
    /// Paid. Final.
    Completed,
    /// Rejected by inventory, expired, or cancelled by its owner. Final.
    Cancelled,
}

/// A transition the state machine does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot be {to}")]
pub struct Transition {
    pub from: &'static str,
    pub to: &'static str,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::AwaitingPayment => "awaiting_payment",
            OrderState::Completed => "completed",
            OrderState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            OrderState::Pending,
            OrderState::AwaitingPayment,
            OrderState::Completed,
            OrderState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    fn refuse(self, to: &'static str) -> Transition {
        Transition {
            from: self.as_str(),
            to,
        }
    }

    /// Inventory held every line.
    pub fn reserve(self) -> Result<Self, Transition> {
        match self {
            OrderState::Pending => Ok(OrderState::AwaitingPayment),
            other => Err(other.refuse("reserved")),
        }
    }

    /// The payment went through.
    pub fn complete(self) -> Result<Self, Transition> {
        match self {
            OrderState::AwaitingPayment => Ok(OrderState::Completed),
            other => Err(other.refuse("completed")),
        }
    }

    /// Rejected, expired or cancelled by its owner: only before payment.
    pub fn cancel(self) -> Result<Self, Transition> {
        match self {
            OrderState::Pending | OrderState::AwaitingPayment => Ok(OrderState::Cancelled),
            other => Err(other.refuse("cancelled")),
        }
    }

    /// Whether the order is still open (it may yet expire).
    pub fn is_open(self) -> bool {
        matches!(self, OrderState::Pending | OrderState::AwaitingPayment)
    }

    /// What a payment that went through does to an order in this state. orders is the one owner
    /// of an order's fate (docs/saga.md, "One owner"): the money is kept only for an order whose
    /// stock is held and that nobody ended first; anything else becomes a refund. `recorded` is
    /// whether the order already has this payment (a replayed event).
    pub fn settle_payment(self, recorded: bool) -> Settlement {
        match (self, recorded) {
            (_, true) => Settlement::Replay,
            (OrderState::AwaitingPayment, false) => Settlement::Complete,
            // Payments only charges an order orders held for payment, which is never pending;
            // if money comes anyway, its stock is not held: end the order and give it back.
            (OrderState::Pending, false) => Settlement::CancelAndRefund,
            (OrderState::Cancelled, false) => Settlement::Refund,
            // One payment per order (payments records one success): a completed order with no
            // recorded payment only exists from before payments were recorded on orders.
            (OrderState::Completed, false) => Settlement::Replay,
        }
    }
}

/// The verdict on a payment that went through, from [`OrderState::settle_payment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Keep the money: the order is completed.
    Complete,
    /// The order had already ended unpaid: it stays cancelled and the money goes back.
    Refund,
    /// Paid before its stock was held: cancel it and give the money back.
    CancelAndRefund,
    /// Seen before: nothing changes.
    Replay,
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::OrderState::*;
    use super::*;

    #[test]
    fn the_happy_path() {
        assert_eq!(
            Pending.reserve().and_then(OrderState::complete),
            Ok(Completed)
        );
    }

    #[test]
    fn cancel_only_before_payment() {
        assert_eq!(Pending.cancel(), Ok(Cancelled));
        assert_eq!(AwaitingPayment.cancel(), Ok(Cancelled));
        assert!(Completed.cancel().is_err());
        assert!(Cancelled.cancel().is_err());
    }

    #[test]
    fn no_skipping_and_no_going_back() {
        assert!(Pending.complete().is_err());
        assert!(AwaitingPayment.reserve().is_err());
        assert!(Completed.reserve().is_err());
        assert!(Cancelled.reserve().is_err());
        assert!(Cancelled.complete().is_err());
        assert_eq!(
            Completed.cancel().unwrap_err().to_string(),
            "an order that is completed cannot be cancelled"
        );
    }

    #[test]
    fn money_is_kept_only_for_an_order_awaiting_payment() {
        assert_eq!(AwaitingPayment.settle_payment(false), Settlement::Complete);
        assert_eq!(Cancelled.settle_payment(false), Settlement::Refund);
        assert_eq!(Pending.settle_payment(false), Settlement::CancelAndRefund);
        for state in [Pending, AwaitingPayment, Completed, Cancelled] {
            assert_eq!(state.settle_payment(true), Settlement::Replay);
        }
    }

    #[test]
    fn states_round_trip_their_names() {
        for state in [Pending, AwaitingPayment, Completed, Cancelled] {
            assert_eq!(OrderState::parse(state.as_str()), Some(state));
        }
        assert_eq!(OrderState::parse("shipped"), None);
    }
}
