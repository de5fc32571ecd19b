//! The load side of `cargo xtask bench notify` (run by it; not a tool of its own).
//!
//! Opens `BENCH_SOCKETS` sockets on one notifications replica (`BENCH_WS_URL`), each as a
//! different user with a token signed by the stack's key (`BENCH_SIGNING_KEY`), then produces to
//! Kafka (`BENCH_KAFKA`, topics under `BENCH_PREFIX`, which only that replica consumes):
//! one `product.created` (a broadcast to every socket), then `BENCH_TARGETED` `order.completed`
//! events for random connected users, paced at `BENCH_RATE` per second. Delivery latency is from
//! just before the produce call to the socket reading the message: the whole path (Kafka, the
//! consumer's MongoDB transaction, Redis pub/sub, the socket). Prints the figures and the
//! replica's memory (`BENCH_PID`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::StreamExt;
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;
use storefront_auth::keys::SigningKey;
use storefront_events::{
    Envelope, Event, Money,
    orders::OrderCompleted,
    products::{ProductCreated, ProductSnapshot, Stock},
};
use storefront_kit::auth::{Claims, ISSUER, Role};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
use uuid::Uuid;

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set (run `cargo xtask bench notify`)"))
}

fn rss_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What a socket read: the user, the notification's kind and its key, and when.
struct Seen {
    kind: String,
    key: String,
    at: Instant,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

fn report(name: &str, mut latencies: Vec<Duration>, expected: usize) {
    latencies.sort();
    println!(
        "  {name:<10} delivered {}/{expected}   p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
    );
}

async fn produce<D: Event>(
    producer: &FutureProducer,
    prefix: &str,
    key: Uuid,
    version: u64,
    data: D,
) {
    let envelope = Envelope::new("bench", key.to_string(), version, data);
    let payload = serde_json::to_vec(&envelope).expect("serialisable");
    let topic = D::TOPIC.name(prefix);
    let key = key.to_string();
    producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce an event");
}

#[tokio::main]
async fn main() {
    let url = var("BENCH_WS_URL");
    let sockets: usize = var("BENCH_SOCKETS").parse().expect("BENCH_SOCKETS");
    let targeted: usize = var("BENCH_TARGETED").parse().expect("BENCH_TARGETED");
    let rate: f64 = var("BENCH_RATE").parse().expect("BENCH_RATE");
    let prefix = var("BENCH_PREFIX");
    let pid = var("BENCH_PID");
    let key = SigningKey::from_pem(&std::fs::read_to_string(var("BENCH_SIGNING_KEY")).unwrap())
        .expect("the stack's signing key");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", var("BENCH_KAFKA"))
        .set("linger.ms", "0")
        .create()
        .expect("a producer");

    let idle = rss_kib(&pid, "VmRSS:");
    let now = Utc::now().timestamp();
    let users: Vec<Uuid> = (0..sockets).map(|_| Uuid::new_v4()).collect();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();

    // Open the sockets, 100 handshakes at a time.
    let started = Instant::now();
    let opened = Arc::new(tokio::sync::Semaphore::new(100));
    let mut handshakes = Vec::new();
    for user in &users {
        let claims = Claims {
            iss: ISSUER.into(),
            sub: (*user).into(),
            email: format!("{user}@bench.example"),
            role: Role::Customer,
            jti: Uuid::new_v4(),
            sid: Uuid::new_v4(),
            iat: now,
            exp: now + 3600,
        };
        let token = key.sign(&claims);
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&format!("bearer, {token}")).unwrap(),
        );
        let permit = opened.clone().acquire_owned().await.unwrap();
        let seen = seen_tx.clone();
        handshakes.push(tokio::spawn(async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .expect("a socket opens");
            match socket.next().await {
                Some(Ok(Message::Text(hello))) if hello.contains("\"hello\"") => {}
                other => panic!("expected a hello, got {other:?}"),
            }
            drop(permit);
            tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    let at = Instant::now();
                    if let Message::Text(text) = message {
                        let value: Value = serde_json::from_str(&text).unwrap_or_default();
                        let n = &value["notification"];
                        let kind = n["kind"].as_str().unwrap_or_default().to_owned();
                        let key = n["order_id"]
                            .as_str()
                            .or(n["product_id"].as_str())
                            .unwrap_or_default()
                            .to_owned();
                        let _ = seen.send(Seen { kind, key, at });
                    }
                }
            });
        }));
    }
    for handshake in handshakes {
        handshake.await.expect("a socket opened");
    }
    drop(seen_tx);
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected = rss_kib(&pid, "VmRSS:");
    println!(
        "  {sockets} sockets open in {:.1} s ({:.0} handshakes/s, each a signed token verified)",
        connect_time.as_secs_f64(),
        sockets as f64 / connect_time.as_secs_f64()
    );

    // One broadcast.
    let product = Uuid::new_v4();
    let stamp = Utc::now();
    let sent = Instant::now();
    produce(
        &producer,
        &prefix,
        product,
        1,
        ProductCreated {
            product: ProductSnapshot {
                product_id: product.into(),
                title: "Bench kettle".into(),
                description: String::new(),
                category: "kitchen".into(),
                price: Money {
                    amount: 1999,
                    currency: "USD".into(),
                },
                images: Vec::new(),
                stock: Stock {
                    available: 1,
                    reserved: 0,
                    sold: 0,
                },
                deleted: false,
                created_at: stamp,
                updated_at: stamp,
            },
        },
    )
    .await;
    let mut broadcast = Vec::with_capacity(sockets);
    let deadline = Instant::now() + Duration::from_secs(30);
    while broadcast.len() < sockets {
        match tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await {
            Ok(Some(seen)) if seen.kind == "new-product" && seen.key == product.to_string() => {
                broadcast.push(seen.at - sent)
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }

    // Targeted events, paced, each to one random connected user.
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let pace = Duration::from_secs_f64(1.0 / rate);
    let producing = {
        let sent_at = sent_at.clone();
        let users = users.clone();
        let producer = producer.clone();
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(pace);
            for i in 0..targeted {
                tick.tick().await;
                let order = Uuid::new_v4();
                let user = users[(i * 7919) % users.len()];
                sent_at
                    .lock()
                    .unwrap()
                    .insert(order.to_string(), Instant::now());
                produce(
                    &producer,
                    &prefix,
                    order,
                    3,
                    OrderCompleted {
                        order_id: order.into(),
                        user_id: user.into(),
                        charges: Vec::new(),
                        total: Money {
                            amount: 2500,
                            currency: "USD".into(),
                        },
                        completed_at: Utc::now(),
                    },
                )
                .await;
            }
        })
    };
    let targeted_started = Instant::now();
    let mut delivered = Vec::with_capacity(targeted);
    let deadline = Instant::now() + Duration::from_secs_f64(targeted as f64 / rate + 60.0);
    while delivered.len() < targeted {
        match tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await {
            Ok(Some(seen)) if seen.kind == "order-completed" => {
                if let Some(at) = sent_at.lock().unwrap().get(&seen.key) {
                    delivered.push(seen.at - *at);
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let targeted_time = targeted_started.elapsed();
    producing.await.expect("produced");

    report("broadcast", broadcast, sockets);
    report("targeted", delivered, targeted);
    println!(
        "  targeted events paced at {rate:.0}/s; {targeted} in {:.1} s",
        targeted_time.as_secs_f64()
    );
    println!(
        "  notifications RSS: idle {:.1} MiB, {sockets} sockets {:.1} MiB ({:.1} KiB per socket), peak {:.1} MiB",
        idle as f64 / 1024.0,
        connected as f64 / 1024.0,
        (connected.saturating_sub(idle)) as f64 / sockets as f64,
        rss_kib(&pid, "VmHWM:") as f64 / 1024.0,
    );
}
