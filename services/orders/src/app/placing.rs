//! Placing an order and quoting one: the lines read from orders' product replica, priced by
//! the pricing function, the order placed once per idempotency key.

use std::collections::BTreeMap;

use chrono::Utc;
use sha2::{Digest, Sha256};
use storefront_events::{Money, OrderId, ProductId, UserId};
use storefront_kit::Error;

use crate::{
    Inner,
    domain::{Fields, MAX_ORDER_TOTAL, OrderState},
    pricing::{Priced, PricingLine, PricingRequest},
    store::{LineDoc, OrderDoc, at},
};

/// What a customer asks to order: each product once, with its whole quantity (the request's
/// lines merged and checked by the caller).
pub type Requested = BTreeMap<ProductId, i64>;

/// Places `requested` as `user`'s order: priced from orders' product replica (never from the
/// client) and through the pricing function (shipping, fees, tax), whose answer is recorded on
/// the order. With an idempotency `key`, the same key again returns the order it placed (the
/// same key with other lines is refused).
pub async fn place_order(
    app: &Inner,
    user: UserId,
    key: Option<String>,
    requested: &Requested,
) -> Result<OrderDoc, Error> {
    let (lines, currency) = lines_of(app, requested).await?;
    let id = OrderId::new();
    let pricing = priced(app, Some(id), user, &lines, &currency).await?;
    // Taken before the idempotency check: a retry with the same key leaves one number unused.
    let number = app.store.next_number().await?;
    let now = Utc::now();
    let window = chrono::Duration::from_std(app.payment_window).map_err(Error::internal)?;
    let order = OrderDoc {
        id,
        user_id: user,
        lines,
        total: pricing.total.clone(),
        state: OrderState::Pending,
        reason: None,
        number: Some(number),
        version: 1,
        created_at: at(now),
        updated_at: at(now),
        expires_at: at(now + window),
        idempotency_key: key.clone(),
        paying_until: None,
        payment: None,
        refund: None,
        pricing: Some(pricing),
    };
    let fingerprint = fingerprint(requested);
    let (order, _new) = app
        .store
        .place(&order, key.as_deref().map(|k| (k, fingerprint.as_str())))
        .await?;
    Ok(order)
}

/// What `requested` would cost as `user`'s order now: the same lines and pricing as
/// [`place_order`], nothing placed.
pub async fn quote(
    app: &Inner,
    user: UserId,
    requested: &Requested,
) -> Result<(Vec<LineDoc>, Priced), Error> {
    let (lines, currency) = lines_of(app, requested).await?;
    let pricing = priced(app, None, user, &lines, &currency).await?;
    Ok((lines, pricing))
}

/// The lines as the idempotency key's record keeps them: the same lines in any order and
/// split any way are the same fingerprint.
fn fingerprint(requested: &Requested) -> String {
    let mut hash = Sha256::new();
    for (id, quantity) in requested {
        hash.update(format!("{id}:{quantity};"));
    }
    format!("{:x}", hash.finalize())
}

/// The lines of `requested`, priced from orders' product replica (never from the client), and
/// their one currency.
async fn lines_of(app: &Inner, requested: &Requested) -> Result<(Vec<LineDoc>, String), Error> {
    let ids: Vec<ProductId> = requested.keys().copied().collect();
    let known = app.store.products(&ids).await?;
    let mut fields = Fields::default();
    let mut lines = Vec::with_capacity(requested.len());
    for (id, quantity) in requested {
        match known.iter().find(|p| p.id == *id) {
            Some(p) if !p.deleted => lines.push(LineDoc {
                product_id: *id,
                title: p.title.clone(),
                unit_price: p.price.clone(),
                quantity: *quantity,
                line_total: p.price.amount * quantity,
            }),
            _ => fields.add("lines", format!("product {id} is not sold here")),
        }
    }
    fields.finish()?;
    let currency = lines[0].unit_price.currency.clone();
    if lines.iter().any(|l| l.unit_price.currency != currency) {
        return Err(Error::field(
            "lines",
            "an order is in one currency; these products are priced in several",
        ));
    }
    Ok((lines, currency))
}

/// 422 for an amount above what one payment can take (Stripe's ceiling), before anyone pays.
fn within_one_payment(amount: &Money) -> Result<(), Error> {
    if amount.amount <= MAX_ORDER_TOTAL {
        return Ok(());
    }
    Err(Error::field(
        "total",
        format!(
            "{amount} is more than one payment can take (at most {}); order fewer items",
            Money {
                amount: MAX_ORDER_TOTAL,
                currency: amount.currency.clone()
            },
        ),
    ))
}

/// Prices `lines` through the pricing function (the fallback when it does not answer usefully).
async fn priced(
    app: &Inner,
    order_id: Option<OrderId>,
    user: UserId,
    lines: &[LineDoc],
    currency: &str,
) -> Result<Priced, Error> {
    let money = |amount| Money {
        amount,
        currency: currency.to_owned(),
    };
    let subtotal = money(lines.iter().map(|l| l.line_total).sum());
    within_one_payment(&subtotal)?;
    let request = PricingRequest {
        order_id,
        user_id: user,
        currency: currency.to_owned(),
        lines: lines
            .iter()
            .map(|l| PricingLine {
                product_id: l.product_id.to_string(),
                title: l.title.clone(),
                unit_price: l.unit_price.clone(),
                quantity: l.quantity,
                line_total: money(l.line_total),
            })
            .collect(),
        subtotal,
    };
    let priced = app.pricing.price(&request).await;
    within_one_payment(&priced.total)?;
    Ok(priced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_lines_are_the_same_fingerprint_and_other_lines_another() {
        let (mug, lamp) = (ProductId::new(), ProductId::new());
        let order = Requested::from([(mug, 3), (lamp, 1)]);
        assert_eq!(
            fingerprint(&order),
            fingerprint(&Requested::from([(lamp, 1), (mug, 3)]))
        );
        assert_ne!(
            fingerprint(&order),
            fingerprint(&Requested::from([(mug, 2), (lamp, 1)]))
        );
    }

    #[test]
    fn an_amount_above_one_payment_is_refused_by_its_field() {
        let at_most = Money {
            amount: MAX_ORDER_TOTAL,
            currency: "USD".into(),
        };
        assert!(within_one_payment(&at_most).is_ok());
        let above = Money {
            amount: MAX_ORDER_TOTAL + 1,
            ..at_most
        };
        let Err(Error::Validation(fields)) = within_one_payment(&above) else {
            panic!("not refused by its field");
        };
        assert_eq!(fields[0].field, "total");
    }
}
