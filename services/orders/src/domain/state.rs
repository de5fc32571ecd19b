//! docs/architecture.md §6: `pending → awaiting_payment → completed`, and `cancelled` from either
//! of the first two. Every transition is a method that returns the next state or why it cannot
//! happen; nothing else changes a state.

pub use storefront_events::orders::OrderState;

/// A transition the state machine does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot be {to}")]
pub struct Transition {
    pub from: &'static str,
    pub to: &'static str,
}

/// The state machine: every transition returns the next state or why it cannot happen.
pub trait Lifecycle: Sized {
    /// Inventory held every line.
    fn reserve(self) -> Result<Self, Transition>;
    /// The payment went through.
    fn complete(self) -> Result<Self, Transition>;
    /// Rejected, expired or cancelled by its owner: only before payment.
    fn cancel(self) -> Result<Self, Transition>;
    /// What a payment that went through does to an order in this state.
    fn settle_payment(self, recorded: bool) -> Settlement;
}

fn refuse(from: OrderState, to: &'static str) -> Transition {
    Transition {
        from: from.as_str(),
        to,
    }
}

impl Lifecycle for OrderState {
    fn reserve(self) -> Result<Self, Transition> {
        match self {
            OrderState::Pending => Ok(OrderState::AwaitingPayment),
            other => Err(refuse(other, "reserved")),
        }
    }

    fn complete(self) -> Result<Self, Transition> {
        match self {
            OrderState::AwaitingPayment => Ok(OrderState::Completed),
            other => Err(refuse(other, "completed")),
        }
    }

    fn cancel(self) -> Result<Self, Transition> {
        match self {
            OrderState::Pending | OrderState::AwaitingPayment => Ok(OrderState::Cancelled),
            other => Err(refuse(other, "cancelled")),
        }
    }

    /// What a payment that went through does to an order in this state. orders is the one owner
    /// of an order's fate (docs/saga.md, "One owner"): the money is kept only for an order whose
    /// stock is held and that nobody ended first; anything else becomes a refund. `recorded` is
    /// whether the order already has this payment (a replayed event).
    fn settle_payment(self, recorded: bool) -> Settlement {
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

/// The verdict on a payment that went through, from [`Lifecycle::settle_payment`].
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
}
