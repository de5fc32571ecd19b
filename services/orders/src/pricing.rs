//! Fees and totals as a function: orders prices every order through a pricing function reached
//! over HTTP — shipping, fee and tax lines on top of the items — with a timeout and a clear
//! fallback, and records the answer on the order (docs/api/pricing.md).
//!
//! The contract is plain JSON over `POST`: the order's lines and subtotal in, the charges out.
//! orders checks every answer (status, shape, currency, bounds) and computes the total itself, so
//! a function can add lines but cannot make an order cost less than nothing or more than one
//! payment can take. A function that is slow, down or answers something else is replaced by
//! [`builtin`] for that order, and the order records `source: fallback` with the reason — never
//! a failed checkout.
//!
//! The built-in function ships as the default: orders serves it on a loopback port of its own and
//! calls it like any other (`PRICING_URL` unset), so the path is the same HTTP call either way.

use std::{net::SocketAddr, time::Duration};
use storefront_events::{OrderId, UserId};

use axum::{Json, Router, routing::post};
use serde::{Deserialize, Serialize};
use storefront_events::{Money, orders::PriceLine};

/// Most charge lines a function may answer.
pub const MAX_CHARGES: usize = 10;
/// Longest label of a charge line.
pub const MAX_LABEL_CHARS: usize = 60;

/// What orders sends the function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingRequest {
    /// Absent when the cart asks for a quote (nothing is placed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    pub user_id: UserId,
    pub currency: String,
    pub lines: Vec<PricingLine>,
    /// The sum of the lines.
    pub subtotal: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingLine {
    pub product_id: String,
    pub title: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub line_total: Money,
}

/// What the function answers: the lines to add to the items (none is a valid answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingAnswer {
    pub charges: Vec<PriceLine>,
}

/// Where an order's charges came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PricingSource {
    /// The configured function answered.
    Function,
    /// It did not (or not usefully): the built-in rules, computed in orders.
    Fallback,
}

/// The pricing of one order, as recorded on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Priced {
    pub subtotal: Money,
    pub charges: Vec<PriceLine>,
    pub total: Money,
    pub source: PricingSource,
    /// Why the fallback was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// The built-in rules (the default function, and the fallback):
/// - shipping 4.99, free from a subtotal of 50.00;
/// - a service fee of 1% of the subtotal, at least 0.30;
/// - tax of 8% on the subtotal and shipping, rounded half up.
///
/// Amounts are minor units; every shop currency has two decimals.
pub fn builtin(request: &PricingRequest) -> PricingAnswer {
    let currency = request.currency.clone();
    let money = |amount: i64| Money {
        amount,
        currency: currency.clone(),
    };
    let subtotal = request.subtotal.amount;
    let shipping = if subtotal >= 5_000 { 0 } else { 499 };
    let fee = (subtotal / 100).max(30);
    let tax = ((subtotal + shipping) * 8 + 50) / 100;
    PricingAnswer {
        charges: vec![
            PriceLine {
                kind: "shipping".into(),
                label: if shipping == 0 {
                    "Shipping (free from 50.00)".into()
                } else {
                    "Shipping".into()
                },
                amount: money(shipping),
            },
            PriceLine {
                kind: "fee".into(),
                label: "Service fee".into(),
                amount: money(fee),
            },
            PriceLine {
                kind: "tax".into(),
                label: "Tax (8%)".into(),
                amount: money(tax),
            },
        ],
    }
}

/// Why a function's answer is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("the pricing function did not answer within {0} ms")]
    Timeout(u128),
    #[error("the pricing function could not be reached: {0}")]
    Unreachable(String),
    #[error("the pricing function answered {0}")]
    Status(u16),
    #[error("the pricing function's answer is not pricing: {0}")]
    Garbage(String),
}

/// Checks a function's answer against the order and adds it up: known kinds, short labels, the
/// order's currency, charges of 0 or more (a discount of 0 down to minus the subtotal), and a
/// total above nothing. The ceiling of one payment is checked by the caller (it is a 422).
pub fn settle(request: &PricingRequest, answer: PricingAnswer) -> Result<Priced, Unusable> {
    let garbage = |why: String| Err(Unusable::Garbage(why));
    if answer.charges.len() > MAX_CHARGES {
        return garbage(format!("more than {MAX_CHARGES} charges"));
    }
    let mut total = request.subtotal.amount;
    for (i, charge) in answer.charges.iter().enumerate() {
        let label = charge.label.trim();
        if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
            return garbage(format!(
                "charges[{i}].label is empty or longer than {MAX_LABEL_CHARS}"
            ));
        }
        if charge.amount.currency != request.currency {
            return garbage(format!(
                "charges[{i}] is in {}, the order in {}",
                charge.amount.currency, request.currency
            ));
        }
        let amount = charge.amount.amount;
        let in_bounds = match charge.kind.as_str() {
            "shipping" | "fee" | "tax" => (0..=crate::domain::MAX_ORDER_TOTAL).contains(&amount),
            "discount" => (-request.subtotal.amount..=0).contains(&amount),
            other => {
                return garbage(format!(
                    "charges[{i}].kind {other:?} is not shipping, fee, tax or discount"
                ));
            }
        };
        if !in_bounds {
            return garbage(format!(
                "charges[{i}].amount {amount} is out of bounds for {}",
                charge.kind
            ));
        }
        total = total
            .checked_add(amount)
            .ok_or_else(|| Unusable::Garbage("the charges overflow".into()))?;
    }
    if total <= 0 {
        return garbage("the total would be nothing".into());
    }
    Ok(Priced {
        subtotal: request.subtotal.clone(),
        charges: answer
            .charges
            .into_iter()
            .map(|c| PriceLine {
                label: c.label.trim().to_owned(),
                ..c
            })
            .collect(),
        total: Money {
            amount: total,
            currency: request.currency.clone(),
        },
        source: PricingSource::Function,
        fallback_reason: None,
    })
}

/// The pricing function orders calls.
#[derive(Clone)]
pub struct Pricing {
    http: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl Pricing {
    pub fn new(url: String, timeout: Duration) -> Self {
        Pricing {
            http: storefront_kit::server::http_client(timeout),
            url,
            timeout,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Prices an order: the function's answer, or the built-in rules with the reason it was not
    /// used. Never fails.
    pub async fn price(&self, request: &PricingRequest) -> Priced {
        match self.ask(request).await {
            Ok(priced) => priced,
            Err(why) => {
                tracing::warn!(order_id = ?request.order_id, url = %self.url, error = %why, "pricing function not used; built-in rules instead");
                let mut priced = settle(request, builtin(request)).unwrap_or_else(|_| Priced {
                    subtotal: request.subtotal.clone(),
                    charges: Vec::new(),
                    total: request.subtotal.clone(),
                    source: PricingSource::Fallback,
                    fallback_reason: None,
                });
                priced.source = PricingSource::Fallback;
                priced.fallback_reason = Some(why.to_string());
                priced
            }
        }
    }

    async fn ask(&self, request: &PricingRequest) -> Result<Priced, Unusable> {
        let answer = storefront_kit::telemetry::propagate(self.http.post(&self.url))
            .json(request)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    Unusable::Timeout(self.timeout.as_millis())
                } else {
                    Unusable::Unreachable(e.to_string())
                }
            })?;
        let status = answer.status().as_u16();
        if status != 200 {
            return Err(Unusable::Status(status));
        }
        let body = answer.bytes().await.map_err(|e| {
            if e.is_timeout() {
                Unusable::Timeout(self.timeout.as_millis())
            } else {
                Unusable::Unreachable(e.to_string())
            }
        })?;
        let answer: PricingAnswer =
            serde_json::from_slice(&body).map_err(|e| Unusable::Garbage(e.to_string()))?;
        settle(request, answer)
    }
}

/// The built-in function as an HTTP service: `POST /price`.
pub fn builtin_router() -> Router {
    Router::new().route(
        "/price",
        post(|Json(request): Json<PricingRequest>| async move { Json(builtin(&request)) }),
    )
}

/// Serves the built-in function on a loopback port of this process; answers its URL.
pub async fn serve_builtin() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, builtin_router()).await {
            tracing::error!(error = %e, "the built-in pricing function stopped");
        }
    });
    Ok(format!("http://{addr}/price"))
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

    fn request(subtotal: i64) -> PricingRequest {
        PricingRequest {
            order_id: Some(OrderId::new()),
            user_id: UserId::new(),
            currency: "USD".into(),
            lines: Vec::new(),
            subtotal: usd(subtotal),
        }
    }

    fn line(kind: &str, amount: i64) -> PriceLine {
        PriceLine {
            kind: kind.into(),
            label: kind.into(),
            amount: usd(amount),
        }
    }

    #[test]
    fn the_builtin_rules() {
        let small = settle(&request(3600), builtin(&request(3600))).unwrap();
        let amounts: Vec<i64> = small.charges.iter().map(|c| c.amount.amount).collect();
        // Shipping 4.99; fee 1% but at least 0.30 → 0.36; tax 8% of 40.99 → 3.28.
        assert_eq!(amounts, [499, 36, 328]);
        assert_eq!(small.total, usd(3600 + 499 + 36 + 328));
        let large = settle(&request(10_000), builtin(&request(10_000))).unwrap();
        let amounts: Vec<i64> = large.charges.iter().map(|c| c.amount.amount).collect();
        assert_eq!(amounts, [0, 100, 800]);
        assert_eq!(builtin(&request(100)).charges[1].amount, usd(30));
    }

    #[test]
    fn answers_that_are_not_pricing_are_refused() {
        let r = request(1000);
        let answer = |charges| PricingAnswer { charges };
        assert!(settle(&r, answer(vec![line("discount", -200), line("tax", 64)])).is_ok());
        for bad in [
            vec![line("tip", 100)],
            vec![line("shipping", -1)],
            vec![line("discount", 1)],
            vec![line("discount", -1001)],
            vec![line("tax", crate::domain::MAX_ORDER_TOTAL + 1)],
            vec![PriceLine {
                amount: Money {
                    amount: 100,
                    currency: "EUR".into(),
                },
                ..line("fee", 100)
            }],
            vec![PriceLine {
                label: " ".into(),
                ..line("fee", 100)
            }],
            vec![PriceLine {
                label: "x".repeat(61),
                ..line("fee", 100)
            }],
            vec![line("discount", -1000)],
            (0..11).map(|_| line("fee", 1)).collect(),
        ] {
            assert!(
                matches!(settle(&r, answer(bad.clone())), Err(Unusable::Garbage(_))),
                "{bad:?}"
            );
        }
    }
}
