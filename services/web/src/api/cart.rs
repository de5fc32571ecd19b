//! cart's API: the cart, its estimate and checkout.

use reqwest::Method;
use serde::Deserialize;
use storefront_events::Money;

use super::{Api, ApiResult, encode, orders::Order};

#[derive(Debug, Clone, Deserialize)]
pub struct CartLine {
    pub product_id: String,
    pub title: String,
    pub unit_price: Option<Money>,
    pub quantity: i64,
    pub line_total: Option<Money>,
    pub available: i64,
    pub orderable: bool,
}

/// Lines checked out into an order that is not paid or cancelled yet.
#[derive(Debug, Clone, Deserialize)]
pub struct Held {
    #[serde(default)]
    pub order_id: Option<String>,
    pub count: i64,
}

/// A line of a price beyond the items: shipping, a fee, tax, a discount.
#[derive(Debug, Clone, Deserialize)]
pub struct Charge {
    pub label: String,
    pub amount: Money,
}

/// What the cart would cost as an order now.
#[derive(Debug, Clone, Deserialize)]
pub struct Estimate {
    pub charges: Vec<Charge>,
    pub total: Money,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cart {
    pub items: Vec<CartLine>,
    pub subtotal: Option<Money>,
    #[serde(default)]
    pub estimate: Option<Estimate>,
    pub count: i64,
    /// Rises with every write of the cart (the live count says which version it counts).
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub held: Vec<Held>,
}

impl Cart {
    /// Whether a line cannot be ordered as it is (its product is gone, or less is available):
    /// the subtotal and the estimate leave it out.
    pub fn has_unorderable(&self) -> bool {
        self.items.iter().any(|line| !line.orderable)
    }
}

impl Api {
    pub async fn cart(&self, token: &str) -> ApiResult<Cart> {
        self.json(self.request(
            Method::GET,
            format!("{}/api/cart", self.urls.cart),
            Some(token),
        ))
        .await
    }

    pub async fn add_to_cart(&self, token: &str, product: &str, quantity: i64) -> ApiResult<Cart> {
        let body = serde_json::json!({ "product_id": product, "quantity": quantity });
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/cart/items", self.urls.cart),
                Some(token),
            )
            .json(&body),
        )
        .await
    }

    pub async fn set_quantity(&self, token: &str, product: &str, quantity: i64) -> ApiResult<Cart> {
        let body = serde_json::json!({ "quantity": quantity });
        self.json(
            self.request(
                Method::PATCH,
                format!("{}/api/cart/items/{}", self.urls.cart, encode(product)),
                Some(token),
            )
            .json(&body),
        )
        .await
    }

    pub async fn remove_from_cart(&self, token: &str, product: &str) -> ApiResult<()> {
        self.send(self.request(
            Method::DELETE,
            format!("{}/api/cart/items/{}", self.urls.cart, encode(product)),
            Some(token),
        ))
        .await
        .map(|_| ())
    }

    pub async fn checkout(&self, token: &str, key: &str) -> ApiResult<Order> {
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/cart/checkout", self.urls.cart),
                Some(token),
            )
            .header("idempotency-key", key),
        )
        .await
    }
}
