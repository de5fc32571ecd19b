use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use storefront_auth::keys::SigningKey;
use storefront_events::{Envelope, Event};
use storefront_kit::{
    auth::{Authenticator, Revocations, Role},
    kafka,
    testing::{self, TestStack, spawn, unique},
};
use storefront_payments::{Config, store::Store};
use storefront_products::{domain::ImageRules, s3::S3Config};
use tokio::sync::watch;
use uuid::Uuid;

pub const WEBHOOK_SECRET: &str = "whsec_storefront_test";

/// payments with the real orders (which holds orders for payment) and products (which reserves
/// their stock) beside it, on one fresh topic prefix.
pub struct App {
    pub addr: SocketAddr,
    pub orders: SocketAddr,
    pub products: SocketAddr,
    pub http: reqwest::Client,
    pub stack: TestStack,
    pub config: Config,
    pub store: Store,
    key: SigningKey,
    admin: String,
    _stop: watch::Sender<bool>,
}

pub struct Customer {
    pub id: Uuid,
    pub token: String,
}

pub async fn app() -> App {
    app_with(|_| {}).await
}

/// [`app`], with `edit` adjusting payments' configuration.
pub async fn app_with(edit: impl FnOnce(&mut Config)) -> App {
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
    tokio::spawn(products.consumer.expect("a consumer").run(stopped.clone()));
    let products_addr = spawn(products.app).await;

    let orders = storefront_orders::build_with(
        &storefront_orders::Config::new(stack.service(&unique("orders"), &prefix, &jwks_url)),
        authenticator().await,
    )
    .await
    .expect("orders builds");
    tokio::spawn(orders.relay.run(stopped.clone()));
    tokio::spawn(orders.consumer.expect("a consumer").run(stopped.clone()));
    tokio::spawn(orders.expiry.run(stopped.clone()));
    let orders_addr = spawn(orders.app).await;

    let mut config = Config::new(
        stack.service(&unique("payments"), &prefix, &jwks_url),
        stack.stripe_secret_key.clone(),
        Some(stack.stripe_url.clone()),
        WEBHOOK_SECRET.into(),
        format!("http://{orders_addr}"),
    );
    config.refund_poll = Duration::from_millis(500);
    edit(&mut config);
    let payments = storefront_payments::build_with(&config, authenticator().await)
        .await
        .expect("payments builds");
    tokio::spawn(payments.relay.run(stopped.clone()));
    tokio::spawn(payments.consumer.expect("a consumer").run(stopped.clone()));
    tokio::spawn(payments.refunds.run(stopped));
    let store = payments.state.store.clone();
    let addr = spawn(payments.app).await;
    let mut app = App {
        addr,
        orders: orders_addr,
        products: products_addr,
        // A request that hangs fails the test with its URL, not silently at nextest's limit (a
        // run of the whole suite once lost a test here to a request that never answered).
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap(),
        stack,
        config,
        store,
        key,
        admin: String::new(),
        _stop: stop,
    };
    app.admin = app.mint(Uuid::new_v4(), Role::Admin);
    app
}

impl App {
    fn mint(&self, sub: Uuid, role: Role) -> String {
        self.key.sign(&testing::claims(sub, role, 900))
    }

    pub fn customer(&self) -> Customer {
        let id = Uuid::new_v4();
        Customer {
            id,
            token: self.mint(id, Role::Customer),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/payments{path}", self.addr)
    }

    /// Publishes `data` on its topic in this shop, as another service would.
    pub async fn publish<E: Event>(&self, key: Uuid, version: u64, data: E) {
        let producer = kafka::producer(&self.config.common.kafka).unwrap();
        let envelope = Envelope::new("orders", key.to_string(), version, data);
        let topic = E::TOPIC.name(&self.config.common.kafka.topic_prefix);
        storefront_kit::testing::produce(&producer, &topic, &envelope).await;
    }

    /// A product at `cents`, once orders' replica has it (an order for it places at once).
    async fn product(&self, cents: i64) -> String {
        let response = self
            .http
            .post(format!("http://{}/api/products", self.products))
            .bearer_auth(&self.admin)
            .json(&json!({ "title": "Mug", "category": "kitchen", "price": { "amount": cents, "currency": "USD" }, "stock": 10 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// An order of `who` for one item at `cents`, placed through orders; with `payable`, once
    /// its stock is reserved.
    pub async fn order(&self, who: &Customer, cents: i64, payable: bool) -> Uuid {
        let product = self.product(cents).await;
        let body = json!({ "lines": [{ "product_id": product, "quantity": 1 }] });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // orders' product replica follows products a moment behind.
        let order: Value = loop {
            let response = self
                .http
                .post(format!("http://{}/api/orders", self.orders))
                .bearer_auth(&who.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::CREATED {
                break response.json().await.unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "orders never took the order: {}",
                response.text().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let id: Uuid = order["id"].as_str().unwrap().parse().unwrap();
        if payable {
            self.wait_order(who, id, "awaiting_payment").await;
        }
        id
    }

    /// The order as orders has it.
    pub async fn order_view(&self, who: &Customer, id: Uuid) -> Value {
        self.http
            .get(format!("http://{}/api/orders/{id}", self.orders))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Follows the order with orders' long-poll until `state`.
    pub async fn wait_order(&self, who: &Customer, id: Uuid, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut order = self.order_view(who, id).await;
        while order["state"] != state {
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} stayed {}",
                order["state"]
            );
            let response = self
                .http
                .get(format!("http://{}/api/orders/{id}?wait=5", self.orders))
                .bearer_auth(&who.token)
                .header("if-none-match", format!("\"{}\"", order["version"]))
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::OK {
                order = response.json().await.unwrap();
            }
        }
        order
    }

    pub async fn cancel(&self, who: &Customer, id: Uuid) -> Response {
        self.http
            .post(format!("http://{}/api/orders/{id}/cancel", self.orders))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn pay(&self, who: &Customer, order: Uuid, method: &str) -> Response {
        self.http
            .post(self.url(""))
            .bearer_auth(&who.token)
            .json(&json!({ "order_id": order, "payment_method": method }))
            .send()
            .await
            .unwrap()
    }

    /// The payment of `order` as its owner sees it.
    pub async fn payment(&self, who: &Customer, order: Uuid) -> Value {
        self.http
            .get(self.url(&format!("/{order}")))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The payment events of this shop's topic for `order`, once `expected` arrived.
    pub async fn events(&self, order: Uuid, expected: usize) -> Vec<Envelope> {
        let topic = storefront_events::Topic::Payments.name(&self.config.common.kafka.topic_prefix);
        storefront_kit::testing::consume(&self.stack.kafka_bootstrap, &topic, expected)
            .await
            .into_iter()
            .filter(|e| e.key == order.to_string())
            .collect()
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

    /// The PaymentIntent as the Stripe stand-in has it.
    pub async fn intent(&self, id: &str) -> Value {
        self.stripe(&format!("payment_intents/{id}")).await
    }

    /// The refunds Stripe holds for a PaymentIntent.
    pub async fn refunds(&self, intent: &str) -> Vec<Value> {
        self.stripe(&format!("refunds?payment_intent={intent}&limit=100"))
            .await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
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
