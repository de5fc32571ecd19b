//! Prometheus metrics: request count and latency by route template and status, and the work the
//! service does on its backends ([`backends`]).
//!
//! Each app owns its [`Metrics`] registry for its requests, so several services or test apps can
//! live in one process. Routes are labelled by their template (`/api/users/admin/users/{id}/block`),
//! never the raw path, so an id in a URL cannot explode the label set.
//!
//! The backend counters (MongoDB commands, Kafka deliveries, outbox sends) are counted where the
//! clients are, far from any app, so they are process-wide: every app's `/metrics` shows them. A
//! service is one process, so they are that service's; a test that runs several services in one
//! process sees their sum.

use std::{
    sync::{Arc, LazyLock},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// What this process asked of its backends, counted by the clients themselves.
pub struct Backends {
    /// `storefront_mongodb_commands_total{command, collection}`: every command the driver sent
    /// (the driver's command monitoring), so `commitTransaction` counts transactions.
    pub mongodb_commands: IntCounterVec,
    /// `storefront_mongodb_command_failures_total{command, code}`: commands MongoDB refused
    /// (`112` is a write conflict); `code` is `network` or `other` when there was no reply.
    pub mongodb_failures: IntCounterVec,
    /// `storefront_kafka_deliveries_total{group, outcome}`: messages a consumer group took, by
    /// what became of them (`applied`, `duplicate`, `ignored`, `idempotent`, `dead_lettered`).
    pub kafka_deliveries: IntCounterVec,
    /// `storefront_kafka_handler_retries_total{group, reason}`: handler runs repeated after a
    /// `conflict` (not counted towards the dead-letter limit) or a `failure`.
    pub kafka_retries: IntCounterVec,
    /// `storefront_kafka_consumer_idle{group}`: 1 while the group's consumer dozes (no fetches
    /// but one every `KAFKA_IDLE_FETCH_INTERVAL_MS`).
    pub kafka_consumer_idle: IntGaugeVec,
    /// `storefront_kafka_rejoins_total{group}`: times a consumer left its group and joined again
    /// because the group gave it no partition although it should hold some (`kafka/assignment.rs`,
    /// `watch_assignment`).
    pub kafka_rejoins: IntCounterVec,
    /// `storefront_outbox_published_total`: events the relay published and marked sent.
    pub outbox_published: IntCounter,
    /// `storefront_outbox_batches_total`: relay steps that published at least one event.
    pub outbox_batches: IntCounter,
    /// `storefront_outbox_republished_total`: sent events marked unsent again because the broker
    /// lost its log (`outbox::Relay`).
    pub outbox_republished: IntCounter,
}

/// The process-wide backend counters.
pub fn backends() -> &'static Backends {
    static BACKENDS: LazyLock<Backends> = LazyLock::new(|| {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
        };
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).expect("static metric definition");
        Backends {
            mongodb_commands: vec(
                "storefront_mongodb_commands_total",
                "MongoDB commands sent",
                &["command", "collection"],
            ),
            mongodb_failures: vec(
                "storefront_mongodb_command_failures_total",
                "MongoDB commands that failed",
                &["command", "code"],
            ),
            kafka_deliveries: vec(
                "storefront_kafka_deliveries_total",
                "Kafka messages a consumer group took, by outcome",
                &["group", "outcome"],
            ),
            kafka_retries: vec(
                "storefront_kafka_handler_retries_total",
                "Event handler runs repeated, by reason",
                &["group", "reason"],
            ),
            kafka_consumer_idle: IntGaugeVec::new(
                Opts::new(
                    "storefront_kafka_consumer_idle",
                    "1 while a consumer group's consumer dozes",
                ),
                &["group"],
            )
            .expect("static metric definition"),
            kafka_rejoins: vec(
                "storefront_kafka_rejoins_total",
                "Consumers that joined their group again after it left them without partitions",
                &["group"],
            ),
            outbox_published: counter(
                "storefront_outbox_published_total",
                "Outbox events published to Kafka",
            ),
            outbox_batches: counter(
                "storefront_outbox_batches_total",
                "Outbox relay batches that published something",
            ),
            outbox_republished: counter(
                "storefront_outbox_republished_total",
                "Outbox events sent again because the broker lost its log",
            ),
        }
    });
    &BACKENDS
}

impl Backends {
    fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(self.kafka_consumer_idle.clone()),
            Box::new(self.kafka_rejoins.clone()),
            Box::new(self.mongodb_commands.clone()),
            Box::new(self.mongodb_failures.clone()),
            Box::new(self.kafka_deliveries.clone()),
            Box::new(self.kafka_retries.clone()),
            Box::new(self.outbox_published.clone()),
            Box::new(self.outbox_batches.clone()),
            Box::new(self.outbox_republished.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("registered once");
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new(service: &str) -> Arc<Self> {
        let registry = Registry::new_custom(
            None,
            Some([("service".to_owned(), service.to_owned())].into()),
        )
        .expect("static registry labels are valid");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        backends().register(&registry);
        Arc::new(Metrics {
            registry,
            requests,
            latency,
        })
    }

    /// The registry, for a service's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Middleware recording every request.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [method.as_str(), route.as_str(), status.as_str()];
    metrics.requests.with_label_values(&labels).inc();
    metrics
        .latency
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub async fn endpoint(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        metrics.render(),
    )
}
