use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use storefront_auth::keys::SigningKey;
use storefront_events::ProductId;
use storefront_kit::{
    auth::{Authenticator, Revocations, Role},
    testing::{self, TestStack, spawn, unique},
};
use storefront_products::{domain::ImageRules, s3::S3Config};
use tokio::sync::watch;
use uuid::Uuid;

pub struct Shop {
    pub products: SocketAddr,
    pub cart: SocketAddr,
    pub orders: SocketAddr,
    pub payments: SocketAddr,
    pub http: reqwest::Client,
    pub stack: TestStack,
    /// The shop's topic prefix (also its Redis namespace).
    pub prefix: String,
    pub cart_store: storefront_cart::store::Store,
    pub orders_store: storefront_orders::store::Store,
    pub payments_store: storefront_payments::store::Store,
    key: SigningKey,
    pub admin: String,
    _stop: watch::Sender<bool>,
}

pub struct Customer {
    pub id: Uuid,
    pub token: String,
}

pub const WEBHOOK_SECRET: &str = "whsec_storefront_test";

/// All four services on one fresh topic prefix.
pub async fn shop() -> Shop {
    shop_with(|_| {}).await
}

/// [`shop`], with `edit` adjusting orders' configuration.
pub async fn shop_with(edit: impl FnOnce(&mut storefront_orders::Config)) -> Shop {
    let stack = TestStack::from_env();
    let prefix = unique("t");
    let key = SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap();
    let authenticator = || async {
        let revocations = Revocations::connect(&stack.redis_url, &prefix)
            .await
            .unwrap();
        Arc::new(Authenticator::from_keys(key.decoding_keys(), revocations))
    };
    let jwks_url = "http://127.0.0.1:9/unused".to_owned();
    let (stop, stopped) = watch::channel(false);

    let products = storefront_products::build_with(
        &storefront_products::Config {
            common: stack.service(&unique("products"), &prefix, &jwks_url),
            s3: S3Config {
                endpoint: stack.s3_endpoint.clone(),
                access_key: stack.s3_access_key.clone(),
                secret_key: stack.s3_secret_key.clone().into(),
                bucket: format!("img-{}", &Uuid::new_v4().simple().to_string()[..12]),
                region: "us-east-1".into(),
                ensure_bucket: true,
            },
            images: ImageRules::default(),
            cache_ttl: Duration::ZERO,
            consume_events: true,
            views_flush: Duration::from_secs(10),
        },
        authenticator().await,
    )
    .await
    .expect("products builds");
    tokio::spawn(products.relay.run(stopped.clone()));
    tokio::spawn(products.consumer.expect("consumer").run(stopped.clone()));
    let products_addr = spawn(products.app).await;

    let mut orders_config =
        storefront_orders::Config::new(stack.service(&unique("orders"), &prefix, &jwks_url));
    orders_config.expiry_poll = Duration::from_millis(500);
    edit(&mut orders_config);
    let orders = storefront_orders::build_with(&orders_config, authenticator().await)
        .await
        .expect("orders builds");
    tokio::spawn(orders.relay.run(stopped.clone()));
    tokio::spawn(orders.consumer.expect("consumer").run(stopped.clone()));
    tokio::spawn(orders.expiry.run(stopped.clone()));
    let orders_store = orders.state.store.clone();
    let orders_addr = spawn(orders.app).await;

    let mut payments_config = storefront_payments::Config::new(
        stack.service(&unique("payments"), &prefix, &jwks_url),
        stack.stripe_secret_key.clone(),
        Some(stack.stripe_url.clone()),
        WEBHOOK_SECRET.into(),
        format!("http://{orders_addr}"),
    );
    payments_config.refund_poll = Duration::from_millis(500);
    let payments = storefront_payments::build_with(&payments_config, authenticator().await)
        .await
        .expect("payments builds");
    let payments_store = payments.state.store.clone();
    tokio::spawn(payments.relay.run(stopped.clone()));
    tokio::spawn(payments.consumer.expect("consumer").run(stopped.clone()));
    tokio::spawn(payments.refunds.run(stopped.clone()));
    let payments_addr = spawn(payments.app).await;

    let cart = storefront_cart::build_with(
        &storefront_cart::Config {
            common: stack.service(&unique("cart"), &prefix, &jwks_url),
            orders_url: format!("http://{orders_addr}"),
            consume_events: true,
        },
        authenticator().await,
    )
    .await
    .expect("cart builds");
    tokio::spawn(cart.consumer.expect("consumer").run(stopped));
    let cart_store = cart.state.store.clone();
    let cart_addr = spawn(cart.app).await;

    let mut shop = Shop {
        products: products_addr,
        cart: cart_addr,
        orders: orders_addr,
        payments: payments_addr,
        http: reqwest::Client::new(),
        stack,
        prefix,
        cart_store,
        orders_store,
        payments_store,
        key,
        admin: String::new(),
        _stop: stop,
    };
    shop.admin = shop.mint(Uuid::new_v4(), Role::Admin);
    shop
}

/// Polls `check` every 50 ms for up to 30 s.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < until, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Shop {
    pub fn mint(&self, sub: Uuid, role: Role) -> String {
        self.key.sign(&testing::claims(sub, role, 900))
    }

    pub fn customer(&self) -> Customer {
        let id = Uuid::new_v4();
        Customer {
            id,
            token: self.mint(id, Role::Customer),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn cart(
        &self,
        method: Method,
        path: &str,
        who: &Customer,
        body: Option<Value>,
    ) -> Response {
        self.call(
            method,
            format!("http://{}/api/cart{path}", self.cart),
            Some(&who.token),
            body,
        )
        .await
    }

    pub async fn view(&self, who: &Customer) -> Value {
        self.cart(Method::GET, "", who, None)
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn checkout(&self, who: &Customer, key: &str) -> Response {
        self.http
            .post(format!("http://{}/api/cart/checkout", self.cart))
            .bearer_auth(&who.token)
            .header("idempotency-key", key)
            .send()
            .await
            .unwrap()
    }

    pub async fn order(&self, who: &Customer, id: &str) -> Value {
        self.call(
            Method::GET,
            format!("http://{}/api/orders/{id}", self.orders),
            Some(&who.token),
            None,
        )
        .await
        .json()
        .await
        .unwrap()
    }

    /// Follows the order with orders' long-poll (one request per change) until `state`.
    pub async fn wait_order(&self, who: &Customer, id: &str, state: &str) -> Value {
        self.wait_order_until(who, id, |order| order["state"] == state)
            .await
    }

    /// Follows the order with orders' long-poll until `done` accepts it (30 s at most).
    pub async fn wait_order_until(
        &self,
        who: &Customer,
        id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut order = self.order(who, id).await;
        while !done(&order) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} stayed as it was: {order}"
            );
            let response = self
                .http
                .get(format!("http://{}/api/orders/{id}?wait=5", self.orders))
                .bearer_auth(&who.token)
                .header("if-none-match", format!("\"{}\"", order["version"]))
                .send()
                .await
                .unwrap();
            match response.status() {
                StatusCode::OK => order = response.json().await.unwrap(),
                StatusCode::NOT_MODIFIED => {}
                other => panic!("long-poll answered {other}"),
            }
        }
        order
    }

    pub async fn pay(&self, who: &Customer, order: &str, method: &str) -> Response {
        self.call(
            Method::POST,
            format!("http://{}/api/payments", self.payments),
            Some(&who.token),
            Some(json!({ "order_id": order, "payment_method": method })),
        )
        .await
    }

    pub async fn cancel(&self, who: &Customer, order: &str) -> Response {
        self.call(
            Method::POST,
            format!("http://{}/api/orders/{order}/cancel", self.orders),
            Some(&who.token),
            None,
        )
        .await
    }

    /// A Stripe object as the Stripe stand-in has it (`payment_intents/pi_…`).
    pub async fn stripe(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/v1/{path}", self.stack.stripe_url))
            .basic_auth(&self.stack.stripe_secret_key, Some(""))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The refunds Stripe made of a PaymentIntent's money.
    pub async fn stripe_refunds(&self, intent: &str) -> Vec<Value> {
        self.stripe(&format!("refunds?payment_intent={intent}&limit=100"))
            .await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["status"] == "succeeded")
            .collect()
    }

    /// A product, once cart's replica has it.
    pub async fn product(&self, title: &str, cents: i64, stock: i64) -> String {
        let response = self
            .call(
                Method::POST,
                format!("http://{}/api/products", self.products),
                Some(&self.admin),
                Some(json!({ "title": title, "category": "kitchen", "price": { "amount": cents, "currency": "USD" }, "stock": stock })),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let product: ProductId = id.parse().unwrap();
        // A customer can check out once both replicas that price and sell it know it.
        eventually("cart's and orders' replicas have the product", || async {
            !self
                .cart_store
                .products(&[product])
                .await
                .unwrap()
                .is_empty()
                && !self
                    .orders_store
                    .products(&[product])
                    .await
                    .unwrap()
                    .is_empty()
        })
        .await;
        id
    }

    pub async fn stock(&self, id: &str) -> (i64, i64, i64) {
        let view: Value = self
            .call(
                Method::GET,
                format!("http://{}/api/products/{id}/stock", self.products),
                Some(&self.admin),
                None,
            )
            .await
            .json()
            .await
            .unwrap();
        let s = &view["stock"];
        (
            s["available"].as_i64().unwrap(),
            s["reserved"].as_i64().unwrap(),
            s["sold"].as_i64().unwrap(),
        )
    }
}

/// Asserts a problem+json answer with `status` and problem slug `kind`; returns its body.
pub async fn problem(response: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("https://storefront.dev/problems/{kind}"),
        "{body}"
    );
    body
}
