use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use storefront_auth::keys::SigningKey;
use storefront_events::{Envelope, Event, Topic};
use storefront_kit::kafka::KafkaProducer;
use storefront_kit::{
    auth::{Authenticator, Revocations, Role},
    config::{HttpConfig, ServiceConfig},
    kafka,
    testing::{self, TestStack, spawn, unique},
};
use storefront_products::{AppState, Config, domain::ImageRules, s3::S3Config, store::Store};
use tokio::sync::watch;
use uuid::Uuid;

pub use storefront_products::demo::png;

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub config: Config,
    pub stack: TestStack,
    pub state: AppState,
    key: SigningKey,
    pub admin: String,
    pub customer: String,
    /// Stops the relay and the consumer.
    pub stop: watch::Sender<bool>,
}

pub fn config(stack: &TestStack) -> Config {
    Config {
        common: ServiceConfig {
            http: HttpConfig {
                max_body_bytes: 64 * 1024,
                ..HttpConfig::default()
            },
            ..stack.service(
                &unique("products"),
                &unique("t"),
                "http://127.0.0.1:9/unused",
            )
        },
        s3: S3Config {
            endpoint: stack.s3_endpoint.clone(),
            access_key: stack.s3_access_key.clone(),
            secret_key: stack.s3_secret_key.clone().into(),
            bucket: format!("img-{}", &Uuid::new_v4().simple().to_string()[..12]),
            region: "us-east-1".into(),
            ensure_bucket: true,
        },
        images: ImageRules {
            max_bytes: 256 * 1024,
            min_side: 32,
            max_side: 8000,
            ..ImageRules::default()
        },
        cache_ttl: Duration::ZERO,
        consume_events: false,
        views_flush: Duration::from_secs(10),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(config(&TestStack::from_env())).await
}

/// Spawns products with `config`, its outbox relay, and (when configured) its inventory consumer.
pub async fn spawn_with(config: Config) -> TestApp {
    let stack = TestStack::from_env();
    let key = SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap();
    let revocations = Revocations::connect(&stack.redis_url, &config.common.kafka.topic_prefix)
        .await
        .unwrap();
    let authenticator = Arc::new(Authenticator::from_keys(key.decoding_keys(), revocations));
    let products = storefront_products::build_with(&config, authenticator)
        .await
        .expect("products builds");
    let addr = spawn(products.app).await;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(products.relay.run(stopped.clone()));
    if let Some(consumer) = products.consumer {
        tokio::spawn(consumer.run(stopped));
    }
    let mut app = TestApp {
        addr,
        http: reqwest::Client::new(),
        config,
        stack,
        state: products.state,
        key,
        admin: String::new(),
        customer: String::new(),
        stop,
    };
    app.admin = app.mint(Role::Admin);
    app.customer = app.mint(Role::Customer);
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/products{path}", self.addr)
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// A valid access token for a new user with `role`.
    pub fn mint(&self, role: Role) -> String {
        self.key.sign(&testing::claims(Uuid::new_v4(), role, 900))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// `method` on `path` as `token`, with a JSON body and `If-Match` when given.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn create(&self, body: Value) -> Response {
        self.send(
            reqwest::Method::POST,
            "",
            Some(&self.admin),
            None,
            Some(body),
        )
        .await
    }

    /// Creates a product and returns its JSON.
    pub async fn product(&self, title: &str, category: &str, cents: i64, stock: i64) -> Value {
        let response = self
            .create(json!({
                "title": title,
                "description": format!("All about {title}."),
                "category": category,
                "price": { "amount": cents, "currency": "USD" },
                "stock": stock,
            }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "create {title}");
        response.json().await.unwrap()
    }

    pub async fn upload(&self, id: &str, bytes: Vec<u8>, name: &str, primary: bool) -> Response {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name(name.to_owned())
                    .mime_str("image/png")
                    .unwrap(),
            )
            .text("primary", primary.to_string());
        self.http
            .post(self.url(&format!("/{id}/images")))
            .bearer_auth(&self.admin)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }
}

pub fn etag(response: &Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts a problem+json answer with `status` and problem slug `kind`; returns its body.
pub async fn problem(response: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("https://storefront.dev/problems/{kind}"),
        "{body}"
    );
    body
}

/// The field names of a 422 problem.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Products with its inventory consumer running.
pub async fn consuming_app() -> TestApp {
    let mut config = config(&TestStack::from_env());
    config.consume_events = true;
    spawn_with(config).await
}

/// Publishes `data` as the event of `key` at `version`, as another service would.
pub async fn publish<E: Event>(app: &TestApp, key: Uuid, version: u64, data: E) -> Envelope {
    let producer: KafkaProducer = kafka::producer(&app.config.common.kafka).unwrap();
    let envelope = Envelope::new("test", key.to_string(), version, data)
        .into_raw()
        .unwrap();
    send(app, &producer, E::TOPIC, &envelope).await;
    envelope
}

/// Sends `envelope` to the shop's `topic` as it is (a replay keeps its id).
pub async fn send(app: &TestApp, producer: &KafkaProducer, topic: Topic, envelope: &Envelope) {
    let topic = topic.name(&app.config.common.kafka.topic_prefix);
    storefront_kit::testing::produce(producer, &topic, envelope).await;
}
