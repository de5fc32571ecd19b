use std::{net::SocketAddr, sync::Arc, time::Duration};

use chrono::Utc;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use storefront_auth::keys::SigningKey;
use storefront_kit::{
    auth::{Authenticator, Claims, ISSUER, Revocations, Role},
    config::{HttpConfig, RedisConfig},
    testing::{TestStack, spawn, unique},
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
    pub cart_store: storefront_cart::store::Store,
    key: SigningKey,
    pub admin: String,
    _stop: watch::Sender<bool>,
}

pub struct Customer {
    pub token: String,
}

/// All four services on one fresh topic prefix.
pub async fn shop() -> Shop {
    let stack = TestStack::from_env();
    let prefix = unique("t");
    let key = SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap();
    let authenticator = || async {
        let revocations = Revocations::connect(&stack.redis_url, &prefix)
            .await
            .unwrap();
        Arc::new(Authenticator::from_keys(key.decoding_keys(), revocations))
    };
    let redis = RedisConfig {
        url: stack.redis_url.clone(),
    };
    let jwks_url = "http://127.0.0.1:9/unused".to_owned();
    let (stop, stopped) = watch::channel(false);

    let products = storefront_products::build_with(
        &storefront_products::Config {
            http: HttpConfig::default(),
            mongo: stack.mongo(&unique("products")),
            kafka: stack.kafka(&prefix),
            redis: redis.clone(),
            jwks_url: jwks_url.clone(),
            s3: S3Config {
                endpoint: stack.s3_endpoint.clone(),
                public_endpoint: None,
                access_key: stack.s3_access_key.clone(),
                secret_key: stack.s3_secret_key.clone(),
                bucket: format!("img-{}", &Uuid::new_v4().simple().to_string()[..12]),
                region: "us-east-1".into(),
                ensure_bucket: true,
                url_ttl: Duration::from_secs(300),
            },
            images: ImageRules::default(),
            cache_ttl: Duration::ZERO,
            consume_events: true,
        },
        authenticator().await,
    )
    .await
    .expect("products builds");
    tokio::spawn(products.relay.run(stopped.clone()));
    tokio::spawn(products.consumer.expect("consumer").run(stopped.clone()));
    let products_addr = spawn(products.app).await;

    let orders = storefront_orders::build_with(
        &storefront_orders::Config {
            http: HttpConfig::default(),
            mongo: stack.mongo(&unique("orders")),
            kafka: stack.kafka(&prefix),
            redis: redis.clone(),
            jwks_url: jwks_url.clone(),
            payment_window: Duration::from_secs(900),
            expiry_poll: Duration::from_millis(500),
            consume_events: true,
        },
        authenticator().await,
    )
    .await
    .expect("orders builds");
    tokio::spawn(orders.relay.run(stopped.clone()));
    tokio::spawn(orders.consumer.expect("consumer").run(stopped.clone()));
    tokio::spawn(orders.expiry.run(stopped.clone()));
    let orders_addr = spawn(orders.app).await;

    let payments = storefront_payments::build_with(
        &storefront_payments::Config {
            http: HttpConfig::default(),
            mongo: stack.mongo(&unique("payments")),
            kafka: stack.kafka(&prefix),
            redis: redis.clone(),
            jwks_url: jwks_url.clone(),
            stripe_secret_key: stack.stripe_secret_key.clone(),
            stripe_api_base: Some(stack.stripe_url.clone()),
            stripe_webhook_secret: "whsec_storefront_test".into(),
            consume_events: true,
        },
        authenticator().await,
    )
    .await
    .expect("payments builds");
    tokio::spawn(payments.relay.run(stopped.clone()));
    tokio::spawn(payments.consumer.expect("consumer").run(stopped.clone()));
    let payments_addr = spawn(payments.app).await;

    let cart = storefront_cart::build_with(
        &storefront_cart::Config {
            http: HttpConfig::default(),
            mongo: stack.mongo(&unique("cart")),
            kafka: stack.kafka(&prefix),
            redis,
            jwks_url,
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
        cart_store,
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
        let now = Utc::now().timestamp();
        self.key.sign(&Claims {
            iss: ISSUER.into(),
            sub,
            email: "someone@example.com".into(),
            role,
            jti: Uuid::new_v4(),
            sid: Uuid::new_v4(),
            iat: now,
            exp: now + 900,
        })
    }

    pub fn customer(&self) -> Customer {
        Customer {
            token: self.mint(Uuid::new_v4(), Role::Customer),
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

    pub async fn wait_order(&self, who: &Customer, id: &str, state: &str) -> Value {
        eventually(&format!("order {id} is {state}"), || async {
            self.order(who, id).await["state"] == state
        })
        .await;
        self.order(who, id).await
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

    /// Pays once payments has heard the order is payable (its replica follows orders' events a
    /// moment behind; until then the answer is 409 `order-not-payable`, as a client would see).
    pub async fn pay_ready(&self, who: &Customer, order: &str, method: &str) -> Response {
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let response = self.pay(who, order, method).await;
            if response.status() != StatusCode::CONFLICT || tokio::time::Instant::now() > until {
                return response;
            }
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body["type"], "https://storefront.dev/problems/order-not-payable",
                "{body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        eventually("cart's replica has the product", || async {
            !self
                .cart_store
                .products(std::slice::from_ref(&id))
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
