//! One order is one trace across the shop (docs/traces.md): a customer's checkout and
//! payment, sent through the gateway with a W3C `traceparent`, must come back from every service
//! it crossed under that one trace id — over HTTP (gateway → cart → orders, gateway → payments →
//! orders) and over Kafka (orders' `order.created` handled in products, products'
//! `inventory.reserved` in orders, payments' `payment.succeeded` in orders, orders'
//! `order.completed` in products and notifications).
//!
//! The suite's shop exports its spans by OTLP (HTTP, protobuf) to `STOREFRONT_TEST_OTLP_ADDR`
//! (`cargo xtask test` sets it, xtask/src/test.rs); this test is the receiver on that address.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
};
use prost::Message;
use serde_json::{Value, json};

/// One span the shop exported.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    name: String,
    /// The event type of a consumed event's span, the path of a request's.
    what: String,
    /// A MongoDB command's span (`find orders`).
    database: bool,
    start_ns: u64,
    end_ns: u64,
}

type Received = Arc<Mutex<Vec<Span>>>;

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| text(a.value.as_ref()))
}

async fn export(State(received): State<Received>, body: Bytes) -> Bytes {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| attribute(&r.attributes, "service.name"))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                let what = attribute(&span.attributes, "type")
                    .or_else(|| attribute(&span.attributes, "uri"))
                    .unwrap_or_default();
                let database = attribute(&span.attributes, "db.system").is_some();
                spans.push(Span {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    name: span.name,
                    what,
                    database,
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                });
            }
        }
    }
    received.lock().unwrap().extend(spans);
    // An empty ExportTraceServiceResponse: everything was taken.
    Bytes::new()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run this through `cargo xtask test`"))
}

/// A W3C `traceparent` in `trace`, as a browser's tracing would send with each request.
fn traceparent(trace: &str) -> String {
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

async fn json_of(answer: reqwest::Response, what: &str) -> Value {
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{what}: {status} {body}");
    body
}

#[tokio::test]
async fn a_checkout_and_its_payment_are_one_trace_across_http_and_kafka() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind(env("STOREFRONT_TEST_OTLP_ADDR"))
        .await
        .expect("the OTLP address is free");
    let receiver = Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let shop = env("STOREFRONT_TEST_SHOP_URL");
    let http = reqwest::Client::new();
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("trace-{}@example.com", &trace[..12]);
    let session = json_of(
        http.post(format!("{shop}/api/users/signup"))
            .json(&json!({ "email": email, "password": "correct horse 9", "name": "Tracy" }))
            .send()
            .await
            .unwrap(),
        "signup",
    )
    .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let products = json_of(
        http.get(format!("{shop}/api/products?in_stock=true&per_page=50"))
            .send()
            .await
            .unwrap(),
        "products",
    )
    .await;
    let product = products["items"]
        .as_array()
        .and_then(|items| items.iter().find(|p| p["available"].as_i64() > Some(5)))
        .expect("a product in stock")["id"]
        .clone();
    json_of(
        http.post(format!("{shop}/api/cart/items"))
            .bearer_auth(&token)
            .json(&json!({ "product_id": product, "quantity": 1 }))
            .send()
            .await
            .unwrap(),
        "add to cart",
    )
    .await;

    let started = Instant::now();
    let order = json_of(
        http.post(format!("{shop}/api/cart/checkout"))
            .bearer_auth(&token)
            .header("idempotency-key", &trace)
            .header("traceparent", traceparent(&trace))
            .send()
            .await
            .unwrap(),
        "checkout",
    )
    .await;
    let order_id = order["id"].as_str().expect("the order's id").to_owned();
    let paid = json_of(
        http.post(format!("{shop}/api/payments"))
            .bearer_auth(&token)
            .header("traceparent", traceparent(&trace))
            .json(&json!({ "order_id": order_id, "payment_method": "pm_card_visa" }))
            .send()
            .await
            .unwrap(),
        "payment",
    )
    .await;
    assert_eq!(paid["status"], "succeeded", "{paid}");

    // Every hop the order made, as (service, what its span was about).
    let expected: BTreeSet<(&str, &str)> = [
        ("cart", "/api/cart/checkout"),
        ("orders", "/api/orders"),
        ("products", "order.created"),
        ("orders", "inventory.reserved"),
        ("payments", "/api/payments"),
        ("orders", "payment.succeeded"),
        ("products", "order.completed"),
        ("notifications", "order.completed"),
    ]
    .into();
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        let spans: Vec<Span> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace)
            .cloned()
            .collect();
        let seen: BTreeSet<(&str, &str)> = spans
            .iter()
            .map(|s| (s.service.as_str(), s.what.as_str()))
            .collect();
        let missing: Vec<_> = expected.difference(&seen).collect();
        // The database work of the services that keep the order's state shows in it too.
        let commands_of = |service: &str| spans.iter().any(|s| s.database && s.service == service);
        if missing.is_empty()
            && ["cart", "orders", "products", "payments"].map(commands_of) == [true; 4]
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s, trace {trace} still lacks {missing:?} or MongoDB spans of cart, orders, \
             products or payments ({:?}); it has {seen:?}",
            ["cart", "orders", "products", "payments"].map(commands_of)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut spans = spans;
    spans.sort_by_key(|s| s.start_ns);
    let first = spans[0].start_ns;
    println!(
        "trace {trace}: order {order_id}, {} spans from {} services, checkout to the last span {} ms",
        spans.len(),
        spans
            .iter()
            .map(|s| s.service.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        (spans.iter().map(|s| s.end_ns).max().unwrap_or(first) - first) / 1_000_000,
    );
    let mut commands: BTreeMap<&str, usize> = BTreeMap::new();
    for span in spans.iter().filter(|s| s.database) {
        *commands.entry(span.service.as_str()).or_default() += 1;
    }
    println!("  MongoDB commands in it (one span each), by service: {commands:?}");
    for span in spans.iter().filter(|s| !s.database) {
        println!(
            "  +{:>5} ms {:>5} ms  {:<13} {:<8} {}",
            (span.start_ns - first) / 1_000_000,
            span.end_ns.saturating_sub(span.start_ns) / 1_000_000,
            span.service,
            span.name,
            span.what,
        );
    }
    println!("(whole test {} ms)", started.elapsed().as_millis());
}
