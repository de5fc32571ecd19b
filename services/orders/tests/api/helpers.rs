use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use storefront_auth::keys::SigningKey;
use storefront_events::{Envelope, Event};
use storefront_kit::{
    auth::{Authenticator, Revocations, Role},
    kafka,
    testing::{self, TestStack, spawn, unique},
};
use storefront_orders::store::Store;
use storefront_products::{domain::ImageRules, s3::S3Config};
use tokio::sync::watch;
use uuid::Uuid;

pub struct Shop {
    pub orders: SocketAddr,
    pub products: SocketAddr,
    pub http: reqwest::Client,
    pub stack: TestStack,
    pub prefix: String,
    pub store: Store,
    key: SigningKey,
    pub admin: String,
    _stop: watch::Sender<bool>,
}

/// A customer: their id and token.
pub struct Customer {
    pub id: Uuid,
    pub token: String,
}

pub fn orders_config(stack: &TestStack, prefix: &str) -> storefront_orders::Config {
    let mut config = storefront_orders::Config::new(stack.service(
        &unique("orders"),
        prefix,
        "http://127.0.0.1:9/unused",
    ));
    config.expiry_poll = Duration::from_millis(200);
    config
}

fn products_config(stack: &TestStack, prefix: &str) -> storefront_products::Config {
    storefront_products::Config {
        common: stack.service(&unique("products"), prefix, "http://127.0.0.1:9/unused"),
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
    }
}

pub async fn shop() -> Shop {
    shop_with(|_| {}).await
}

/// Both services on one fresh topic prefix; `edit` adjusts orders' configuration.
pub async fn shop_with(edit: impl FnOnce(&mut storefront_orders::Config)) -> Shop {
    shop_configured(edit, true).await
}

/// A shop whose products service does not answer orders (no inventory consumer): its orders
/// stay pending.
pub async fn shop_without_inventory() -> Shop {
    shop_configured(|_| {}, false).await
}

async fn shop_configured(
    edit: impl FnOnce(&mut storefront_orders::Config),
    inventory: bool,
) -> Shop {
    let stack = TestStack::from_env();
    let prefix = unique("t");
    let key = SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap();
    let authenticator = || async {
        let revocations = Revocations::connect(&stack.redis_url, &prefix)
            .await
            .unwrap();
        Arc::new(Authenticator::from_keys(key.decoding_keys(), revocations))
    };
    let (stop, stopped) = watch::channel(false);

    let mut products_config = products_config(&stack, &prefix);
    products_config.consume_events = inventory;
    let products = storefront_products::build_with(&products_config, authenticator().await)
        .await
        .expect("products builds");
    tokio::spawn(products.relay.run(stopped.clone()));
    if let Some(consumer) = products.consumer {
        tokio::spawn(consumer.run(stopped.clone()));
    }
    let products_addr = spawn(products.app).await;

    let mut config = orders_config(&stack, &prefix);
    edit(&mut config);
    let orders = storefront_orders::build_with(&config, authenticator().await)
        .await
        .expect("orders builds");
    tokio::spawn(orders.relay.run(stopped.clone()));
    tokio::spawn(orders.consumer.expect("a consumer").run(stopped.clone()));
    tokio::spawn(orders.expiry.run(stopped));
    let store = orders.state.store.clone();
    let orders_addr = spawn(orders.app).await;

    let mut shop = Shop {
        orders: orders_addr,
        products: products_addr,
        http: reqwest::Client::new(),
        stack,
        prefix,
        store,
        key,
        admin: String::new(),
        _stop: stop,
    };
    shop.admin = shop.mint(Uuid::new_v4(), Role::Admin);
    shop
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

    /// `method` on orders' `path` (after `/api/orders`) as `token`, with a JSON body.
    pub async fn orders(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .http
            .request(method, format!("http://{}/api/orders{path}", self.orders));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn place(&self, who: &Customer, lines: Value) -> Response {
        self.orders(
            Method::POST,
            "",
            Some(&who.token),
            Some(json!({ "lines": lines })),
        )
        .await
    }

    pub async fn order(&self, who: &str, id: &str) -> Value {
        let response = self
            .orders(Method::GET, &format!("/{id}"), Some(who), None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// payments' hold of order `id`, as `who`, waiting up to `wait` seconds.
    pub async fn hold(&self, who: &str, id: &str, wait: &str) -> Response {
        self.http
            .post(format!(
                "http://{}/internal/orders/{id}/payment-hold?wait={wait}",
                self.orders
            ))
            .bearer_auth(who)
            .send()
            .await
            .unwrap()
    }

    /// `GET /api/orders/{id}` as `who` with `If-None-Match` (when given) and `query`.
    pub async fn follow(
        &self,
        who: &str,
        id: &str,
        if_none_match: Option<&str>,
        query: &str,
    ) -> Response {
        let mut request = self
            .http
            .get(format!("http://{}/api/orders/{id}{query}", self.orders))
            .bearer_auth(who);
        if let Some(tag) = if_none_match {
            request = request.header("if-none-match", tag);
        }
        request.send().await.unwrap()
    }

    /// The orders topic's events for `key`, once `expected` of the topic's events arrived.
    pub async fn order_events(&self, key: &str, expected: usize) -> Vec<Envelope> {
        let topic = storefront_events::Topic::Orders.name(&self.prefix);
        storefront_kit::testing::consume(&self.stack.kafka_bootstrap, &topic, expected)
            .await
            .into_iter()
            .filter(|e| e.key == key)
            .collect()
    }

    /// Waits until the order's state is `state`; returns the order.
    pub async fn wait_state(&self, who: &str, id: &str, state: &str) -> Value {
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let order = self.order(who, id).await;
            if order["state"] == state {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "order {id} stayed {}",
                order["state"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A product created through the products API, once orders' replica has it.
    pub async fn product(&self, title: &str, cents: i64, stock: i64) -> String {
        let response = self
            .http
            .post(format!("http://{}/api/products", self.products))
            .bearer_auth(&self.admin)
            .json(&json!({ "title": title, "category": "kitchen", "price": { "amount": cents, "currency": "USD" }, "stock": stock }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let product: Value = response.json().await.unwrap();
        let id = product["id"].as_str().unwrap().to_owned();
        self.wait_replica(&id, 1).await;
        id
    }

    /// Waits until orders' replica of `id` is at `version` or later.
    pub async fn wait_replica(&self, id: &str, version: i64) {
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.store.products(&[id.parse().unwrap()]).await.unwrap();
            if found.first().is_some_and(|p| p.version >= version) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "replica of {id} never reached v{version}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Products' stock of `id`: (available, reserved, sold).
    pub async fn stock(&self, id: &str) -> (i64, i64, i64) {
        let view: Value = self
            .http
            .get(format!("http://{}/api/products/{id}/stock", self.products))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
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

    /// Publishes `data` on its topic in this shop, as another service would.
    pub async fn publish<E: Event>(&self, key: &str, version: u64, data: E) {
        let producer = kafka::producer(&self.stack.kafka(&self.prefix)).unwrap();
        let envelope = Envelope::new("test", key, version, data);
        storefront_kit::testing::produce(&producer, &E::TOPIC.name(&self.prefix), &envelope).await;
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
