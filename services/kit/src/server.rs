//! The router around a service's own routes, and serving it.
//!
//! [`build`] adds what every service answers the same way: `/healthz` (the process is alive),
//! `/readyz` (every declared dependency answers), `/metrics`, a problem+json 404, and the edge
//! layers — request ids (`x-request-id`, generated when absent and echoed back), tracing, metrics,
//! body limit, timeout, security headers and CORS. [`serve`] runs it until SIGTERM/Ctrl-C and then
//! drains in-flight requests before returning.

use std::{
    collections::BTreeMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{ConnectInfo, DefaultBodyLimit, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{Error, config::HttpConfig, metrics::Metrics, telemetry};

mod background;
mod start;
pub use background::{Background, run};
pub use start::{Backends, Service, Shared, StartError};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// Set when the process is asked to stop (see [`shutdown_signal`]): `/readyz` answers 503 and every
/// response closes its connection, while requests are still served for the drain period. One
/// flag for the process: the signal stops every server in it.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether this process is draining before it stops.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// While draining, every answer carries `Connection: close`: a client's keep-alive connection to
/// this pod ends after its next request, and its next connection goes to a pod that stays.
async fn close_when_draining(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// How long a client of another service keeps an unused connection: less than the drain a
/// stopping pod gives (`SHUTDOWN_DRAIN_SECS`, 5 s where the operator runs the shop), so a pooled
/// connection never sits idle through a whole drain and meets the server closing it as a request
/// goes out on it; during the drain every answer closes its connection anyway.
pub const CLIENT_IDLE: Duration = Duration::from_secs(4);

/// The HTTP client a service calls another with (or a pricing function, or auth's JWKS): a total
/// `timeout` per request and pooled connections that never outlive [`CLIENT_IDLE`].
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(CLIENT_IDLE)
        .build()
        .unwrap_or_default()
}

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The dependencies a service declares; `/readyz` is 200 only when every one answers.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, CheckFn)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check<F, Fut>(mut self, name: &str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.to_owned(), Arc::new(move || Box::pin(check()))));
        self
    }

    /// The service's own MongoDB database answers a ping.
    pub fn mongo(self, mongo: &crate::mongo::Mongo) -> Self {
        let mongo = mongo.clone();
        self.check("mongodb", move || {
            let mongo = mongo.clone();
            async move { mongo.ping().await }
        })
    }

    /// Redis (the revocation list) answers.
    pub fn redis(self, revocations: &crate::auth::Revocations) -> Self {
        let revocations = revocations.clone();
        self.check("redis", move || {
            let revocations = revocations.clone();
            async move { revocations.ping().await }
        })
    }

    /// Kafka answers the producer's metadata request.
    pub fn kafka(self, producer: &crate::kafka::KafkaProducer) -> Self {
        let producer = producer.clone();
        self.check("kafka", move || {
            let producer = producer.clone();
            async move { crate::kafka::ping(&producer).await }
        })
    }

    /// Runs every check concurrently: whether all passed, and each one's answer.
    pub async fn run(&self) -> (bool, BTreeMap<String, String>) {
        let results =
            futures::future::join_all(self.checks.iter().map(|(name, check)| async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                };
                (name.clone(), outcome)
            }))
            .await;
        let ready = results.iter().all(|(_, r)| r.is_ok());
        let report = results
            .into_iter()
            .map(|(name, r)| (name, r.err().unwrap_or_else(|| "ok".into())))
            .collect();
        (ready, report)
    }
}

#[derive(Clone)]
struct Ops {
    readiness: Readiness,
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "alive" }))
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    if draining() {
        let body = serde_json::json!({ "status": "draining", "checks": {} });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body));
    }
    let (ready, checks) = ops.readiness.run().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not-ready" },
        "checks": checks,
    });
    (status, axum::Json(body))
}

async fn not_found(request: Request) -> Error {
    Error::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// The whole app of one service: its routes plus the ops endpoints and edge layers.
pub fn build(service: &str, routes: Router, readiness: Readiness, http: &HttpConfig) -> Router {
    let metrics = Metrics::new(service);
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Ops { readiness })
        .merge(
            Router::new()
                .route("/metrics", get(crate::metrics::endpoint))
                .with_state(metrics.clone()),
        );

    let request_id = HeaderName::from_static("x-request-id");
    let mut app = routes
        .merge(ops)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(close_when_draining))
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            http.request_timeout,
        ))
        .layer(axum::middleware::from_fn(crate::error::problems_only))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    if !http.cors_allowed_origins.is_empty() {
        crate::auth::trust_origins(&http.cors_allowed_origins);
        let origins: Vec<HeaderValue> = http
            .cors_allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    header::IF_MATCH,
                    HeaderName::from_static("idempotency-key"),
                ])
                .max_age(Duration::from_secs(600)),
        );
    }
    app.layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
        let id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let path = request.uri().path();
        // Probes and scrapes come every few seconds from every kubelet and Prometheus: not
        // traced (traces take `info` spans and above), nor logged at `info`.
        if matches!(path, "/healthz" | "/readyz" | "/metrics") {
            return tracing::debug_span!("request", method = %request.method(), uri = %path, request_id = %id);
        }
        let span = tracing::info_span!("request", method = %request.method(), uri = %path, request_id = %id, trace_id = tracing::field::Empty);
        // The caller's trace, if it sent one (a browser, the gateway, another service).
        telemetry::continue_from(&span, |name| {
            request.headers().get(name).and_then(|v| v.to_str().ok())
        });
        span
    }))
    .layer(PropagateRequestIdLayer::new(request_id.clone()))
    .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
    .layer(axum::middleware::map_request(drop_odd_request_id))
}

/// The longest `x-request-id` a client may choose; a longer one is replaced by a new one.
const REQUEST_ID_MAX: usize = 64;

/// A client's `x-request-id` is kept only when short and plain: it is echoed in the answer, logged
/// and passed on, and a 4 KB one made the gateway answer 502 ("upstream sent too big header").
/// Anything else is dropped, so a new one is made.
async fn drop_odd_request_id(mut request: Request) -> Request {
    let plain = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= REQUEST_ID_MAX
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    let headers = request.headers();
    let mut ids = headers.get_all("x-request-id").iter();
    let keep = matches!((ids.next(), ids.next()), (Some(id), None) if plain(id));
    if !keep {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Binds `addr`, with a message naming it on failure.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves `app` until `shutdown` resolves, then stops accepting and drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening");
    }
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C, `drain` after it
/// (`HttpConfig::shutdown_drain`): from the signal on, the process is [`draining`].
pub async fn shutdown_signal(drain: Duration) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    DRAINING.store(true, Ordering::Relaxed);
    tracing::info!(?drain, "shutdown signal received: draining, then stopping");
    tokio::time::sleep(drain).await;
}

/// The client's address: the socket peer, or `X-Real-IP` when the service trusts its proxy.
pub fn client_ip(parts: &Parts, trust_proxy_headers: bool) -> Option<IpAddr> {
    if trust_proxy_headers
        && let Some(ip) = parts
            .headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Reads a request's whole body (up to `limit`; 413 past it) before the handler runs: for routes
/// that take large bodies and may answer before reading them (an upload's 401). A service that
/// answers and closes with a large body unread resets the connection, and a proxy still sending
/// it loses the answer and makes it a 502. Layer it with `from_fn_with_state(limit, …)`.
pub async fn read_body_first(State(limit): State<usize>, request: Request, next: Next) -> Response {
    // At most two such bodies in memory (and their handlers' work, e.g. decoding an image) at
    // once; they are admins' uploads, and anyone may send one before being turned away.
    static LARGE_BODIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let Ok(_permit) = LARGE_BODIES.acquire().await else {
        return Error::Unavailable("shutting down".into()).into_response();
    };
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(_) => Error::PayloadTooLarge.into_response(),
    }
}
