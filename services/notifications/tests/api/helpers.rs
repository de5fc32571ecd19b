use std::{net::SocketAddr, sync::Arc, time::Duration};

use chrono::Utc;
use futures::{SinkExt, StreamExt};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use storefront_auth::keys::SigningKey;
use storefront_events::{
    Envelope, Event, Money,
    orders::{OrderAwaitingPayment, OrderCancelled, OrderCompleted, PriceLine},
    products::{ProductCreated, ProductSnapshot, Stock},
};
use storefront_kit::kafka::KafkaProducer;
use storefront_kit::{
    auth::{Authenticator, Claims, Revocations, Role},
    config::KafkaConfig,
    kafka,
    testing::{self, TestStack, spawn, unique},
};
use storefront_notifications::{Config, SocketConfig, hub::Hub};
use tokio::{net::TcpStream, sync::watch};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};
use uuid::Uuid;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Replica {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
}

pub struct Shop {
    pub replicas: Vec<Replica>,
    pub http: reqwest::Client,
    pub revocations: Revocations,
    producer: KafkaProducer,
    prefix: String,
    key: SigningKey,
    _stop: watch::Sender<bool>,
}

pub struct User {
    pub id: Uuid,
    pub token: String,
    pub claims: Claims,
}

/// `replicas` notifications replicas on one fresh database, topic prefix and channel.
pub async fn shop(replicas: usize, sockets: SocketConfig) -> Shop {
    let stack = TestStack::from_env();
    let prefix = unique("t");
    let key = SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap();
    let config = Config {
        common: stack.service(
            &unique("notifications"),
            &prefix,
            "http://127.0.0.1:9/unused",
        ),
        consume_events: true,
        sockets,
    };
    let (stop, stopped) = watch::channel(false);
    let mut started = Vec::new();
    for _ in 0..replicas {
        let revocations = Revocations::connect(&stack.redis_url, &prefix)
            .await
            .unwrap();
        let authenticator = Arc::new(Authenticator::from_keys(key.decoding_keys(), revocations));
        let built = storefront_notifications::build_with(&config, authenticator)
            .await
            .expect("notifications builds");
        tokio::spawn(built.consumer.expect("a consumer").run(stopped.clone()));
        let hub = built.state.hub.clone();
        tokio::spawn(built.fanout.run(stopped.clone()));
        let addr = spawn(built.app).await;
        eventually("the replica subscribed to fan-out", || async {
            hub.subscribed()
        })
        .await;
        started.push(Replica { addr, hub });
    }
    Shop {
        replicas: started,
        http: reqwest::Client::new(),
        revocations: Revocations::connect(&stack.redis_url, &prefix)
            .await
            .unwrap(),
        producer: kafka::producer(&KafkaConfig {
            ..stack.kafka(&prefix)
        })
        .unwrap(),
        prefix,
        key,
        _stop: stop,
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

pub fn usd(amount: i64) -> Money {
    Money {
        amount,
        currency: "USD".into(),
    }
}

impl Shop {
    pub fn mint(&self, sub: Uuid, expires_in: i64) -> (String, Claims) {
        let claims = testing::claims(sub, Role::Customer, expires_in);
        (self.key.sign(&claims), claims)
    }

    pub fn user(&self) -> User {
        let id = Uuid::new_v4();
        let (token, claims) = self.mint(id, 900);
        User { id, token, claims }
    }

    /// Tells notifications the account exists (`user.created`, made now), as auth does at
    /// sign-up: from then on the shop's announcements count for it.
    pub async fn signed_up(&self, user: &User) {
        self.publish(
            user.id,
            1,
            storefront_events::users::UserCreated {
                user_id: user.id.into(),
                email: format!("{}@example.com", user.id.simple()),
                name: "Someone".into(),
                role: storefront_events::users::Role::Customer,
                created_at: Utc::now(),
            },
        )
        .await;
    }

    /// Produces `data` as the aggregate `key`'s event, as its owning service would.
    pub async fn publish<D: Event>(&self, key: Uuid, version: u64, data: D) -> Uuid {
        let envelope = Envelope::new("test", key.to_string(), version, data);
        storefront_kit::testing::produce(&self.producer, &D::TOPIC.name(&self.prefix), &envelope)
            .await;
        envelope.id
    }

    /// Produces the same envelope again (a redelivery).
    pub async fn republish(&self, envelope: &Envelope) {
        let topic = format!("{}.orders", self.prefix);
        storefront_kit::testing::produce(&self.producer, &topic, envelope).await;
    }

    pub async fn confirmed(&self, user: &User, order: Uuid) {
        self.publish(
            order,
            2,
            OrderAwaitingPayment {
                order_id: order.into(),
                user_id: user.id.into(),
                charges: vec![
                    PriceLine {
                        kind: "shipping".into(),
                        label: "Shipping".into(),
                        amount: usd(499),
                    },
                    PriceLine {
                        kind: "tax".into(),
                        label: "Tax (8%)".into(),
                        amount: usd(160),
                    },
                ],
                total: usd(2500),
                expires_at: Utc::now(),
            },
        )
        .await;
    }

    pub async fn completed(&self, user: &User, order: Uuid) {
        self.publish(
            order,
            3,
            OrderCompleted {
                order_id: order.into(),
                user_id: user.id.into(),
                charges: Vec::new(),
                total: usd(2500),
                completed_at: Utc::now(),
            },
        )
        .await;
    }

    pub async fn cancelled(&self, user: &User, order: Uuid, reason: &str) {
        self.publish(
            order,
            3,
            OrderCancelled {
                order_id: order.into(),
                user_id: user.id.into(),
                reason: reason.into(),
                cancelled_at: Utc::now(),
            },
        )
        .await;
    }

    pub async fn new_product(&self, title: &str) -> Uuid {
        let id = Uuid::new_v4();
        let now = Utc::now();
        self.publish(
            id,
            1,
            ProductCreated {
                product: ProductSnapshot {
                    product_id: id.into(),
                    title: title.into(),
                    description: String::new(),
                    category: "kitchen".into(),
                    price: usd(1999),
                    images: Vec::new(),
                    stock: Stock {
                        available: 5,
                        reserved: 0,
                        sold: 0,
                    },
                    deleted: false,
                    created_at: now,
                    updated_at: now,
                },
            },
        )
        .await;
        id
    }

    pub fn url(&self, replica: usize, path: &str) -> String {
        format!("http://{}{path}", self.replicas[replica].addr)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.http.get(self.url(0, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: &str) -> Response {
        self.http
            .post(self.url(0, path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The user's history, once it holds `n` notifications.
    pub async fn history(&self, user: &User, n: usize) -> Value {
        eventually(&format!("{n} notifications stored"), || async {
            let page: Value = self
                .get("/api/notifications?limit=100", Some(&user.token))
                .await
                .json()
                .await
                .unwrap();
            page["items"].as_array().map_or(0, Vec::len) >= n
        })
        .await;
        self.get("/api/notifications?limit=100", Some(&user.token))
            .await
            .json()
            .await
            .unwrap()
    }

    /// A socket on `replica` with the bearer subprotocol; returns it after the hello.
    pub async fn socket(&self, replica: usize, token: &str, after: Option<i64>) -> (Socket, Value) {
        let query = after.map(|a| format!("?after={a}")).unwrap_or_default();
        let mut request = format!(
            "ws://{}/ws/notifications{query}",
            self.replicas[replica].addr
        )
        .into_client_request()
        .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&format!("bearer, {token}")).unwrap(),
        );
        let (mut socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the socket opens");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "bearer",
            "the server picks the bearer subprotocol"
        );
        let hello = next(&mut socket).await.expect("a hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        (socket, hello)
    }

    /// Says `user`'s cart now holds `count` items at `version`, as cart does after a write
    /// (kept and published); returns once it is kept.
    pub async fn cart_changed(&self, user: &User, count: i64, version: i64) {
        let news = storefront_kit::fanout::CartCount {
            user: user.id.into(),
            count,
            version,
        };
        let redis = self.revocations.redis();
        news.announce(&redis, &self.prefix);
        eventually("the cart's count is kept", || async {
            storefront_kit::fanout::CartCount::latest(&redis, &self.prefix, user.id.into()).await
                == Some(news)
        })
        .await;
    }

    /// An anonymous socket on `replica` watching `products`' stock, after its hello.
    pub async fn watch(&self, replica: usize, products: &[Uuid]) -> Socket {
        let ids: Vec<String> = products.iter().map(Uuid::to_string).collect();
        let url = format!(
            "ws://{}/ws/notifications/stock?products={}",
            self.replicas[replica].addr,
            ids.join(",")
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the stock socket opens");
        let hello = next(&mut socket).await.expect("a hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["products"], products.len());
        socket
    }

    /// Produces `product`'s stock change to `available`, as products does (at `version`).
    pub async fn stock_changed(&self, product: Uuid, version: u64, available: i64) {
        self.publish(
            product,
            version,
            storefront_events::products::StockChanged {
                product_id: product.into(),
                movement: storefront_events::products::StockMovement::Adjusted,
                delta: 0,
                stock: Stock {
                    available,
                    reserved: 0,
                    sold: 0,
                },
                order_id: None,
                reason: Some("recount".into()),
            },
        )
        .await;
    }
}

/// The next JSON message, or `None` when nothing comes within 10 s.
pub async fn next(socket: &mut Socket) -> Option<Value> {
    within(socket, Duration::from_secs(10)).await
}

/// The next JSON message within `wait`.
pub async fn within(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(until, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(other))) => panic!("unexpected message {other:?}"),
            Ok(Some(Err(e))) => panic!("socket error: {e}"),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The close frame's code, read off the socket within 10 s.
pub async fn closed_with(socket: &mut Socket) -> Option<u16> {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(until, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
        }
    }
}

pub async fn say_goodbye(socket: &mut Socket) {
    let _ = socket.send(Message::Close(None)).await;
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
