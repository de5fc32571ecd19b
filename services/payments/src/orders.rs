//! orders, the owner of every order's fate (docs/saga.md, "One owner"): before payments calls
//! Stripe it asks orders to *hold* the order for payment, with the customer's own token. The hold
//! answers what to charge (the total recorded on the order) and makes a cancel or the expiry wait
//! until the payment's outcome is known. Stock still being reserved is waited for there, so a
//! customer can pay right after checkout.

use std::time::Duration;
use storefront_events::{OrderId, UserId};

use serde::Deserialize;
use storefront_events::{Money, orders::PriceLine};
use storefront_kit::Error;

/// What payments needs of an order it may charge.
#[derive(Debug, Clone, Deserialize)]
pub struct HeldOrder {
    pub id: OrderId,
    pub user_id: UserId,
    /// What to charge: the total recorded on the order.
    pub total: Money,
    /// What the total is made of beyond the items (shipping, fees, tax), for the customer.
    #[serde(default)]
    pub charges: Vec<PriceLine>,
}

#[derive(Clone)]
pub struct Orders {
    http: reqwest::Client,
    base: String,
    /// How long orders may wait for a pending order's stock to be reserved.
    wait: Duration,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    detail: String,
}

impl Orders {
    pub fn new(base: &str, wait: Duration) -> Self {
        Orders {
            // The hold may wait `wait` for the reservation; a little more for the answer.
            http: storefront_kit::server::http_client(wait + Duration::from_secs(5)),
            base: base.trim_end_matches('/').to_owned(),
            wait,
        }
    }

    /// Holds `order` for payment as the customer whose `token` this is. orders' refusals come
    /// back as the same problems (404, 409 `already-paid` / `order-not-payable`); orders not
    /// answering is a 503 (nothing was charged).
    pub async fn hold(&self, token: &str, order: OrderId) -> Result<HeldOrder, Error> {
        let answer = storefront_kit::telemetry::propagate(self.http.post(format!(
            "{}/internal/orders/{order}/payment-hold?wait={}",
            self.base,
            self.wait.as_secs().max(1)
        )))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| {
            Error::Unavailable(format!("orders did not answer ({e}); nothing was charged"))
        })?;
        let status = answer.status().as_u16();
        if status == 200 {
            return answer.json::<HeldOrder>().await.map_err(|e| {
                Error::Unavailable(format!("orders answered something unreadable: {e}"))
            });
        }
        let problem: Problem = answer.json().await.unwrap_or(Problem {
            kind: String::new(),
            detail: String::new(),
        });
        let slug = problem.kind.rsplit('/').next().unwrap_or_default();
        Err(match (status, slug) {
            (404, _) => Error::NotFound("no such order".into()),
            (409, "already-paid") => Error::Conflict {
                kind: "already-paid",
                detail: problem.detail,
            },
            (409, _) => Error::Conflict {
                kind: "order-not-payable",
                detail: problem.detail,
            },
            (401, _) => Error::unauthenticated(problem.detail),
            _ => Error::Unavailable(format!(
                "orders answered {status}: {}; nothing was charged",
                problem.detail
            )),
        })
    }
}
