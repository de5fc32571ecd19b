//! What a notification says: the message an order's, a payment's or a product's event becomes
//! for the customer (or for everyone), if any. No I/O: `events.rs` decodes the event, the store
//! numbers and keeps the draft.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::{
    Money, OrderEvent, OrderId, PaymentEvent, ProductEvent, UserId,
    orders::{OrderState, PriceLine},
};

/// `to` of a notification for everyone.
pub const EVERYONE: &str = "*";

/// What a notification is about; clients choose an icon and a page by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "NotificationKind")]
pub enum Kind {
    /// The stock is held and the order waits for payment.
    OrderConfirmed,
    /// Paid: the order is complete.
    OrderCompleted,
    /// Cancelled, with the reason (out of stock, expired, by the customer).
    OrderCancelled,
    /// A card was declined; another may be tried while the order waits.
    PaymentFailed,
    /// A captured payment was refunded.
    PaymentRefunded,
    /// A new product in the shop (for everyone).
    NewProduct,
}

/// A notification before it has an id.
#[derive(Debug, Clone)]
pub struct Draft {
    pub to: String,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub order_id: Option<String>,
    pub order_status: Option<String>,
    pub product_id: Option<String>,
}

/// `43.63 USD (items 36.00 USD, Shipping 4.99 USD, Tax (8%) 2.88 USD)`: a total with what makes
/// it up, when there is more to it than the items.
fn with_charges(total: &Money, charges: &[PriceLine]) -> String {
    if charges.is_empty() {
        return total.to_string();
    }
    let items = Money {
        amount: total.amount - charges.iter().map(|c| c.amount.amount).sum::<i64>(),
        currency: total.currency.clone(),
    };
    let parts: Vec<String> = std::iter::once(format!("items {items}"))
        .chain(charges.iter().map(|c| format!("{} {}", c.label, c.amount)))
        .collect();
    format!("{total} ({})", parts.join(", "))
}

fn for_order(
    user: UserId,
    order: OrderId,
    kind: Kind,
    status: OrderState,
    title: String,
    body: String,
) -> Draft {
    Draft {
        to: user.to_string(),
        kind,
        title,
        body,
        link: Some(format!("/orders/{order}")),
        order_id: Some(order.to_string()),
        order_status: Some(status.as_str().to_owned()),
        product_id: None,
    }
}

/// The notification an order's event becomes, if any. Every event of the topic is named: one
/// added to it is a decision to make here.
pub fn order_notice(order: OrderEvent) -> Option<Draft> {
    match order {
        OrderEvent::AwaitingPayment(e) => Some(for_order(
            e.user_id,
            e.order_id,
            Kind::OrderConfirmed,
            OrderState::AwaitingPayment,
            "Your order is confirmed".to_owned(),
            format!(
                "Your items are reserved. Pay {} by {} to complete the order.",
                with_charges(&e.total, &e.charges),
                e.expires_at.format("%H:%M UTC")
            ),
        )),
        OrderEvent::Completed(e) => Some(for_order(
            e.user_id,
            e.order_id,
            Kind::OrderCompleted,
            OrderState::Completed,
            "Your order is complete".to_owned(),
            format!(
                "We received your payment of {}. Thank you!",
                with_charges(&e.total, &e.charges)
            ),
        )),
        OrderEvent::Cancelled(e) => Some(for_order(
            e.user_id,
            e.order_id,
            Kind::OrderCancelled,
            OrderState::Cancelled,
            "Your order was cancelled".to_owned(),
            format!("Why: {}.", e.reason.trim_end_matches('.')),
        )),
        // A placed order is news once its stock is held; a refund once the money is back.
        OrderEvent::Created(_) | OrderEvent::RefundDue(_) | OrderEvent::Refunded(_) => None,
    }
}

/// The notification a payment's event becomes, if any.
pub fn payment_notice(payment: PaymentEvent) -> Option<Draft> {
    match payment {
        PaymentEvent::Failed(e) => Some(for_order(
            e.user_id,
            e.order_id,
            Kind::PaymentFailed,
            OrderState::AwaitingPayment,
            "A payment for your order failed".to_owned(),
            format!(
                "{}. You can try another card until the order expires.",
                e.reason.trim_end_matches('.')
            ),
        )),
        PaymentEvent::Refunded(e) => Some(for_order(
            e.user_id,
            e.order_id,
            Kind::PaymentRefunded,
            OrderState::Cancelled,
            "Your order was refunded".to_owned(),
            format!("{} is on its way back to your card.", e.amount),
        )),
        // The order's `order.completed` says it, with the order's total.
        PaymentEvent::Succeeded(_) => None,
    }
}

/// The notification a product's event becomes, if any: a new product, for everyone.
pub fn product_notice(product: ProductEvent) -> Option<Draft> {
    match product {
        ProductEvent::Created(created) if !created.product.deleted => {
            let product = created.product;
            Some(Draft {
                to: EVERYONE.to_owned(),
                kind: Kind::NewProduct,
                title: format!("New in the shop: {}", product.title),
                body: format!("{} for {}.", product.title, product.price),
                link: Some(format!("/products/{}", product.product_id)),
                order_id: None,
                order_status: None,
                product_id: Some(product.product_id.to_string()),
            })
        }
        // Stock news goes to the product sockets, not into notifications.
        ProductEvent::Created(_)
        | ProductEvent::Updated(_)
        | ProductEvent::Deleted(_)
        | ProductEvent::StockChanged(_)
        | ProductEvent::InventoryReserved(_)
        | ProductEvent::InventoryRejected(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(amount: i64) -> Money {
        Money {
            amount,
            currency: "USD".into(),
        }
    }

    #[test]
    fn a_total_says_what_makes_it_up_beyond_the_items() {
        assert_eq!(with_charges(&usd(3600), &[]), "36.00 USD");
        let charges = [
            PriceLine {
                kind: "shipping".into(),
                label: "Shipping".into(),
                amount: usd(499),
            },
            PriceLine {
                kind: "tax".into(),
                label: "Tax (8%)".into(),
                amount: usd(288),
            },
        ];
        assert_eq!(
            with_charges(&usd(4387), &charges),
            "43.87 USD (items 36.00 USD, Shipping 4.99 USD, Tax (8%) 2.88 USD)"
        );
    }

    #[test]
    fn an_order_notice_goes_to_its_customer_and_links_the_order() {
        let (user, order) = (UserId::new(), OrderId::new());
        let cancelled = OrderEvent::Cancelled(storefront_events::orders::OrderCancelled {
            order_id: order,
            user_id: user,
            reason: "out of stock.".into(),
            cancelled_at: chrono::Utc::now(),
        });
        let notice = order_notice(cancelled).unwrap();
        assert_eq!(notice.to, user.to_string());
        assert_eq!(notice.kind, Kind::OrderCancelled);
        assert_eq!(notice.body, "Why: out of stock.");
        assert_eq!(notice.link, Some(format!("/orders/{order}")));
        assert_eq!(notice.order_status.as_deref(), Some("cancelled"));
    }
}
