//! A payment's status and the only moves between statuses there are. The store writes each move
//! guarded by the statuses it may start from ([`Transition::from`]), so two requests, the webhook
//! and the recovery task racing on one payment cannot both move it, and a paid payment is never
//! taken for another attempt.

use serde::{Deserialize, Serialize};

/// Where the payment of an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// A request holds the claim and is talking to Stripe.
    Processing,
    /// Waiting for the customer (3-D Secure) or for Stripe's webhook.
    RequiresAction,
    /// The last attempt was declined (`reason`); the order stays payable.
    Failed,
    /// Paid; `payment.succeeded` was published.
    Succeeded,
    /// The money was received for an order that had ended; it is on its way back.
    RefundDue,
    /// The money received went back (Stripe confirmed the refund).
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::Processing,
        PaymentStatus::RequiresAction,
        PaymentStatus::Failed,
        PaymentStatus::Succeeded,
        PaymentStatus::RefundDue,
        PaymentStatus::Refunded,
    ];

    /// Money was received (whether it is kept or goes back).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            PaymentStatus::Succeeded | PaymentStatus::RefundDue | PaymentStatus::Refunded
        )
    }
}

/// A move of a payment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A request takes the payment for an attempt after a decline or an unfinished one.
    Claim,
    /// A request takes over a claim whose request died (older than a claim lasts).
    Reclaim,
    /// The recovery task takes an attempt nobody finished, to ask Stripe how it ended.
    TakeAbandoned,
    /// A request lets go of its claim: the customer must act, or Stripe's webhook will tell.
    AwaitAction,
    /// An attempt that never reached Stripe is given up (no event: nothing was charged).
    GiveUp,
    /// Stripe took the money: `payment.succeeded`.
    Succeed,
    /// Stripe declined: `payment.failed`; the order stays payable.
    Fail,
    /// orders asked for the money back (it arrived for an order that had ended).
    OweRefund,
    /// Stripe confirmed the refund: `payment.refunded`.
    Refund,
}

impl Transition {
    /// The statuses this move may start from.
    pub fn from(self) -> &'static [PaymentStatus] {
        use PaymentStatus::*;
        match self {
            Transition::Claim => &[Failed, RequiresAction],
            Transition::Reclaim | Transition::AwaitAction | Transition::GiveUp => &[Processing],
            Transition::TakeAbandoned | Transition::Fail => &[Processing, RequiresAction],
            Transition::Succeed => &[Processing, RequiresAction, Failed],
            Transition::OweRefund => &[Processing, RequiresAction, Failed, Succeeded],
            Transition::Refund => &[RefundDue],
        }
    }

    /// The status it leaves the payment in.
    pub fn to(self) -> PaymentStatus {
        use PaymentStatus::*;
        match self {
            Transition::Claim | Transition::Reclaim | Transition::TakeAbandoned => Processing,
            Transition::AwaitAction => RequiresAction,
            Transition::GiveUp | Transition::Fail => Failed,
            Transition::Succeed => Succeeded,
            Transition::OweRefund => RefundDue,
            Transition::Refund => Refunded,
        }
    }

    /// Whether a payment in `status` may make this move.
    pub fn allows(self, status: PaymentStatus) -> bool {
        self.from().contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Transition; 9] = [
        Transition::Claim,
        Transition::Reclaim,
        Transition::TakeAbandoned,
        Transition::AwaitAction,
        Transition::GiveUp,
        Transition::Succeed,
        Transition::Fail,
        Transition::OweRefund,
        Transition::Refund,
    ];

    #[test]
    fn money_received_is_never_forgotten() {
        for t in ALL {
            for &from in t.from() {
                if from.is_paid() {
                    assert!(t.to().is_paid(), "{t:?} from {from:?} to {:?}", t.to());
                }
            }
        }
    }

    #[test]
    fn a_paid_payment_is_never_attempted_again_nor_declined() {
        // All but the refund's two moves.
        let attempts = ALL
            .into_iter()
            .filter(|t| !matches!(t, Transition::OweRefund | Transition::Refund));
        for t in attempts {
            assert!(
                PaymentStatus::ALL
                    .iter()
                    .all(|&s| !(s.is_paid() && t.allows(s))),
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_refund_is_owed_once_and_refunded_is_final() {
        for t in ALL {
            assert!(!t.allows(PaymentStatus::Refunded), "{t:?} leaves Refunded");
        }
        assert!(!Transition::OweRefund.allows(PaymentStatus::RefundDue));
        assert!(Transition::OweRefund.allows(PaymentStatus::Succeeded));
        assert_eq!(Transition::Refund.from(), &[PaymentStatus::RefundDue]);
    }

    #[test]
    fn every_status_is_reached_by_some_move() {
        for status in PaymentStatus::ALL {
            assert!(
                ALL.iter().any(|t| t.to() == status),
                "nothing moves a payment to {status:?}"
            );
        }
    }
}
