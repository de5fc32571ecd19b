use std::{net::SocketAddr, sync::Arc, time::Duration};

use chrono::Utc;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use storefront_auth::keys::SigningKey;
use storefront_events::{
    Envelope, Event, Money,
    orders::{OrderAwaitingPayment, OrderCancelled, OrderCreated, OrderLine},
};
use storefront_kit::{
    auth::{Authenticator, Claims, ISSUER, Revocations, Role},
    config::{HttpConfig, RedisConfig},
    kafka,
    testing::{TestStack, spawn, unique},
};
use storefront_payments::{Config, store::Store};
use tokio::sync::watch;
use uuid::Uuid;

pub const WEBHOOK_SECRET: &str = "whsec_storefront_test";

pub struct App {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub stack: TestStack,
    pub config: Config,
    pub store: Store,
    key: SigningKey,
    _stop: watch::Sender<bool>,
}

pub struct Customer {
    pub id: Uuid,
    pub token: String,
}

pub async fn app() -> App {
    let stack = TestStack::from_env();
    let prefix = unique("t");
    let config = Config {
        http: HttpConfig::default(),
        mongo: stack.mongo(&unique("payments")),
        kafka: stack.kafka(&prefix),
        redis: RedisConfig {
            url: stack.redis_url.clone(),
        },
        jwks_url: "http://127.0.0.1:9/unused".into(),
        stripe_secret_key: stack.stripe_secret_key.clone(),
        stripe_api_base: Some(stack.stripe_url.clone()),
        stripe_webhook_secret: WEBHOOK_SECRET.into(),
        consume_events: true,
    };
    let key = SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap();
    let revocations = Revocations::connect(&stack.redis_url, &prefix)
        .await
        .unwrap();
    let authenticator = Arc::new(Authenticator::from_keys(key.decoding_keys(), revocations));
    let payments = storefront_payments::build_with(&config, authenticator)
        .await
        .expect("payments builds");
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(payments.relay.run(stopped.clone()));
    tokio::spawn(payments.consumer.expect("a consumer").run(stopped));
    let store = payments.state.store.clone();
    let addr = spawn(payments.app).await;
    App {
        addr,
        http: reqwest::Client::new(),
        stack,
        config,
        store,
        key,
        _stop: stop,
    }
}

fn usd(amount: i64) -> Money {
    Money {
        amount,
        currency: "USD".into(),
    }
}

impl App {
    pub fn customer(&self) -> Customer {
        let id = Uuid::new_v4();
        let now = Utc::now().timestamp();
        let token = self.key.sign(&Claims {
            iss: ISSUER.into(),
            sub: id,
            email: "someone@example.com".into(),
            role: Role::Customer,
            jti: Uuid::new_v4(),
            sid: Uuid::new_v4(),
            iat: now,
            exp: now + 900,
        });
        Customer { id, token }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/payments{path}", self.addr)
    }

    pub async fn publish<E: Event>(&self, key: Uuid, version: u64, data: E) {
        let producer: rdkafka::producer::FutureProducer =
            kafka::producer(&self.config.kafka).unwrap();
        let envelope = Envelope::new("orders", key.to_string(), version, data)
            .into_raw()
            .unwrap();
        let payload = serde_json::to_vec(&envelope).unwrap();
        let topic = E::TOPIC.name(&self.config.kafka.topic_prefix);
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&topic)
                    .key(&envelope.key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// An order of `who` for `cents`, as payments' replica sees it once it is `state`.
    pub async fn order(&self, who: &Customer, cents: i64, payable: bool) -> Uuid {
        let order = Uuid::now_v7();
        let created = OrderCreated {
            order_id: order,
            user_id: who.id,
            lines: vec![OrderLine {
                product_id: Uuid::new_v4(),
                title: "Mug".into(),
                unit_price: usd(cents),
                quantity: 1,
            }],
            total: usd(cents),
            created_at: Utc::now(),
        };
        self.publish(order, 1, created).await;
        if payable {
            let awaiting = OrderAwaitingPayment {
                order_id: order,
                user_id: who.id,
                total: usd(cents),
                expires_at: Utc::now() + chrono::Duration::minutes(15),
            };
            self.publish(order, 2, awaiting).await;
        }
        self.wait_replica(
            order,
            if payable {
                "awaiting_payment"
            } else {
                "pending"
            },
        )
        .await;
        order
    }

    pub async fn cancel(&self, who: &Customer, order: Uuid, version: u64) {
        let cancelled = OrderCancelled {
            order_id: order,
            user_id: who.id,
            reason: "the payment window expired".into(),
            cancelled_at: Utc::now(),
        };
        self.publish(order, version, cancelled).await;
    }

    pub async fn wait_replica(&self, order: Uuid, state: &str) {
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(o) = self.store.order(order).await.unwrap()
                && o.state == state
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "order {order} never became {state}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

    /// The payment events of this shop's topic for `order`, once `expected` arrived.
    pub async fn events(&self, order: Uuid, expected: usize) -> Vec<Envelope> {
        let topic = storefront_events::Topic::Payments.name(&self.config.kafka.topic_prefix);
        storefront_kit::testing::consume(&self.stack.kafka_bootstrap, &topic, expected)
            .await
            .into_iter()
            .filter(|e| e.key == order.to_string())
            .collect()
    }

    /// The PaymentIntent as the Stripe stand-in has it.
    pub async fn intent(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/payment_intents/{id}", self.stack.stripe_url))
            .basic_auth(&self.stack.stripe_secret_key, Some(""))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
