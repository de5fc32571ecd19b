//! payments' API: paying an order and reading its payment.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use storefront_events::Money;

use super::{Api, ApiError, ApiResult, encode};

/// A payment as payments reports it to an admin (`GET /api/payments/{order_id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    pub status: String,
    pub amount: Money,
    #[serde(default)]
    pub attempts: i64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What paying answered.
#[derive(Debug, Clone)]
pub enum Paid {
    Succeeded,
    /// 3-D Secure: hand this client secret to Stripe.js.
    RequiresAction(String),
}

impl Api {
    pub async fn pay(&self, token: &str, order: &str, payment_method: &str) -> ApiResult<Paid> {
        let body = serde_json::json!({ "order_id": order, "payment_method": payment_method });
        let answer: Value = self
            .json(
                self.request(
                    Method::POST,
                    format!("{}/api/payments", self.urls.payments),
                    Some(token),
                )
                .json(&body),
            )
            .await?;
        match answer["status"].as_str() {
            Some("requires_action") => Ok(Paid::RequiresAction(
                answer["client_secret"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )),
            _ => Ok(Paid::Succeeded),
        }
    }

    /// The payment of an order, `None` when it has none.
    pub async fn payment(&self, token: &str, order: &str) -> ApiResult<Option<Payment>> {
        let answer = self
            .json(self.request(
                Method::GET,
                format!("{}/api/payments/{}", self.urls.payments, encode(order)),
                Some(token),
            ))
            .await;
        match answer {
            Ok(payment) => Ok(Some(payment)),
            Err(ApiError::Problem(p)) if p.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Why the latest attempt to pay an order failed, when it did (`None` without a payment, or
    /// when it did not fail).
    pub async fn payment_failure(&self, token: &str, order: &str) -> ApiResult<Option<String>> {
        let answer = self
            .json::<Value>(self.request(
                Method::GET,
                format!("{}/api/payments/{}", self.urls.payments, encode(order)),
                Some(token),
            ))
            .await;
        match answer {
            Ok(payment) if payment["status"] == "failed" => Ok(Some(
                payment["reason"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .unwrap_or("the bank did not accept it")
                    .to_owned(),
            )),
            Ok(_) => Ok(None),
            Err(ApiError::Problem(p)) if p.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }
}
