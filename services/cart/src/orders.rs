//! orders, as the cart reaches it with the customer's own token: placing a checkout's lines as
//! an order, and quoting the cart's lines (what they would cost as an order now).

use std::time::Duration;

use axum::{
    body::Bytes,
    http::{HeaderValue, StatusCode},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::{
    Money,
    orders::{PlaceOrder, PriceLine},
};
use storefront_kit::{Error, server, telemetry::propagate};

/// How long the cart waits for orders' quote before it shows the cart without one.
const QUOTE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long placing an order may take, all told.
const PLACE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the orderable lines would cost as an order now: orders' quote, through the shop's
/// pricing function (shipping, fees, tax).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Estimate {
    charges: Vec<PriceLine>,
    total: Money,
}

/// orders' answer to placing an order, as it came: the cart passes it on to the customer.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}

pub struct Orders {
    http: reqwest::Client,
    base: String,
}

impl Orders {
    /// orders at `url` (`ORDERS_URL`).
    pub fn new(url: &str) -> Self {
        Orders {
            http: server::http_client(PLACE_TIMEOUT),
            base: url.trim_end_matches('/').to_owned(),
        }
    }

    /// Places `order` for the customer whose `token` this is, once per idempotency `key`.
    /// Unavailable when orders does not answer, or its answer is cut off.
    pub async fn place(&self, token: &str, key: &str, order: &PlaceOrder) -> Result<Answer, Error> {
        let answer = propagate(self.http.post(format!("{}/api/orders", self.base)))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(order)
            .send()
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "orders did not answer ({e}); your lines are kept for this checkout: retry with the same Idempotency-Key"
                ))
            })?;
        let status = StatusCode::from_u16(answer.status().as_u16()).map_err(Error::internal)?;
        let content_type = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
            .unwrap_or(HeaderValue::from_static("application/json"));
        let body = answer.bytes().await.map_err(|e| {
            Error::Unavailable(format!(
                "orders' answer was cut off ({e}); retry with the same Idempotency-Key"
            ))
        })?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    /// orders' quote for `lines`, or `None` when orders does not answer with one in time.
    pub async fn quote(&self, token: &str, lines: &PlaceOrder) -> Option<Estimate> {
        let answer = propagate(self.http.post(format!("{}/api/orders/quote", self.base)))
            .bearer_auth(token)
            .timeout(QUOTE_TIMEOUT)
            .json(lines)
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => answer.json().await.ok(),
            Ok(answer) => {
                tracing::debug!(status = %answer.status(), "no quote for the cart");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "orders did not quote the cart");
                None
            }
        }
    }
}
