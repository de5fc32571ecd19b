//! Logs and traces with `tracing`.
//!
//! **Logs**: pretty for people locally, JSON (`LOG_FORMAT=json`) in clusters; the filter comes
//! from `RUST_LOG` (default `info`).
//!
//! **Traces** (OpenTelemetry), off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (e.g.
//! `http://otel-collector:4318`): then every span — an HTTP request, a consumed event, what a
//! handler opens — is exported by OTLP over HTTP (protobuf) to `{endpoint}/v1/traces`, batched
//! (the standard `OTEL_BSP_*` and `OTEL_RESOURCE_ATTRIBUTES` variables apply; `service.name` is
//! the service). One order is one trace across the shop, carried in the W3C trace context:
//!
//! - **HTTP in**: a request's span continues the caller's `traceparent` (a browser's, the
//!   gateway passes it on) — `crate::server`;
//! - **HTTP out**: [`propagate`] adds the current span's `traceparent` to a call (cart → orders,
//!   payments → orders, web → every service);
//! - **Kafka**: an event appended to the outbox keeps the `traceparent` of the span that appended
//!   it ([`traceparent`]), the relay sends it as a Kafka header, and the consumer's span for the
//!   event continues it ([`continue_from`]) — so the checkout request, inventory's reservation in
//!   products and orders' step are one trace, however long the event waited.

use std::{collections::HashMap, future::Future, sync::OnceLock};

use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, filter::LevelFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

/// The W3C header (and Kafka header) a trace context travels in.
pub const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Where traces go when set (`http://host:4318`); traces are off without it.
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Sets up logging, and tracing when [`OTLP_ENDPOINT`] is set. Call [`shutdown`] before the
/// process exits, so the last spans are sent.
pub fn init(service: &str) {
    init_with_filter(service, "info");
}

/// [`init`] with another filter than `info` when `RUST_LOG` is not set.
pub fn init_with_filter(service: &str, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let logs = if json {
        fmt::layer()
            .with_target(false)
            .json()
            .flatten_event(true)
            .boxed()
    } else {
        fmt::layer().with_target(false).compact().boxed()
    };
    global::set_text_map_propagator(TraceContextPropagator::new());
    let (traces, failed) = match exporting(service) {
        Ok(Some(provider)) => {
            let tracer = provider.tracer(service.to_owned());
            let _ = PROVIDER.set(provider);
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                None,
            )
        }
        Ok(None) => (None, None),
        Err(e) => (None, Some(e)),
    };
    // `RUST_LOG` filters the logs only: spans at `info` and above are traced whatever it says
    // (`RUST_LOG=warn` must not cut a trace in two). `try_init`: a second call (tests spawning
    // several apps) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces.map(|t| t.with_filter(LevelFilter::INFO)))
        .try_init();
    let traces = PROVIDER.get().is_some();
    tracing::info!(service, traces, "starting");
    if let Some(e) = failed {
        tracing::error!(error = %e, "traces are off: the OTLP exporter cannot be made");
    }
}

/// The tracer provider exporting to [`OTLP_ENDPOINT`], if it is set.
fn exporting(service: &str) -> Result<Option<SdkTracerProvider>, String> {
    if std::env::var(OTLP_ENDPOINT).map_or(true, |v| v.trim().is_empty()) {
        return Ok(None);
    }
    // The exporter's blocking HTTP client starts a runtime of its own: made off the service's.
    let exporter = std::thread::spawn(|| {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
    })
    .join()
    .map_err(|_| "the exporter's thread panicked".to_owned())?
    .map_err(|e| e.to_string())?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    global::set_tracer_provider(provider.clone());
    Ok(Some(provider))
}

/// Sends the spans not yet exported; blocks (up to the exporter's timeout) while it does.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        eprintln!("traces: the last spans were not all sent: {e}");
    }
}

struct Headers<'a>(&'a mut HashMap<String, String>);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// `span`'s trace context as headers (`traceparent`, and `tracestate` when there is one); empty
/// when traces are off.
fn context_of(span: &tracing::Span) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let context = span.context();
    global::get_text_map_propagator(|p| p.inject_context(&context, &mut Headers(&mut headers)));
    headers
}

/// The current span's `traceparent`; `None` when traces are off.
pub fn traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// `span`'s own `traceparent`, to hand to what it causes.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    context_of(span).remove(TRACEPARENT)
}

tokio::task_local! {
    /// While a batch of consumed events is applied: each event's `traceparent` by its key.
    static BATCH: HashMap<String, String>;
}

/// Runs `work` (a batch of consumed events applied together) knowing each event's trace by its
/// key (the order or product it is about): an event appended for that key continues that
/// event's trace, not the batch's ([`traceparent_for`]).
pub async fn with_traces_by_key<F: Future>(traces: HashMap<String, String>, work: F) -> F::Output {
    BATCH.scope(traces, work).await
}

/// The `traceparent` an event about to be appended to the outbox for `key` carries: in a batch,
/// that of the consumed event about the same order or product; else the current span's.
pub fn traceparent_for(key: &str) -> Option<String> {
    BATCH
        .try_with(|traces| traces.get(key).cloned())
        .ok()
        .flatten()
        .or_else(traceparent)
}

/// `request` with the current span's trace context, so the service it calls continues it.
pub fn propagate(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    context_of(&tracing::Span::current())
        .into_iter()
        .fold(request, |request, (name, value)| {
            request.header(name, value)
        })
}

/// Reads a trace context out of any headers: `F` finds a header's text by name.
struct Lookup<'h, 'a, F>(&'h F, std::marker::PhantomData<&'a str>);

impl<'a, F: Fn(&str) -> Option<&'a str>> Extractor for Lookup<'_, 'a, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, TRACESTATE]
            .into_iter()
            .filter(|k| (self.0)(k).is_some())
            .collect()
    }
}

fn extract<'a>(header: &impl Fn(&str) -> Option<&'a str>) -> opentelemetry::Context {
    global::get_text_map_propagator(|p| p.extract(&Lookup(header, std::marker::PhantomData)))
}

/// Makes `span` continue the trace whose context `header` finds (`traceparent`, `tracestate`):
/// an HTTP request's headers, a Kafka message's; with none, it stays in its parent span's trace,
/// or starts one of its own. Then names the trace in the span's `trace_id` field
/// ([`record_trace_id`]). Nothing when traces are off.
pub fn continue_from<'a>(span: &tracing::Span, header: impl Fn(&str) -> Option<&'a str>) {
    if header(TRACEPARENT).is_some() {
        let _ = span.set_parent(extract(&header));
    }
    record_trace_id(span);
}

/// Writes `span`'s trace id into its `trace_id` field (when it declares one, as
/// `tracing::field::Empty`), so every log line inside it names its trace. Nothing when traces
/// are off.
pub fn record_trace_id(span: &tracing::Span) {
    let trace = span.context().span().span_context().trace_id();
    if trace != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace));
    }
}

/// A command whose answer never came this long after it started was cancelled with its caller
/// (a request that timed out, a client that went away): its span is ended as such.
const COMMAND_ANSWER: std::time::Duration = std::time::Duration::from_secs(60);

/// MongoDB commands in flight as spans, by the driver's request id, with when they started.
type OpenCommands = HashMap<i32, (std::time::Instant, opentelemetry_sdk::trace::Span)>;
static COMMANDS: std::sync::LazyLock<std::sync::Mutex<OpenCommands>> =
    std::sync::LazyLock::new(Default::default);

/// Turns the driver's command events into spans (traces on only): a command started inside a
/// traced span — a request, a consumed event — becomes its child (`find orders`, with
/// `db.system`, `db.operation.name`, `db.collection.name`, `db.namespace`), ended when the
/// command succeeds or fails. Commands sent outside any traced span (the driver's own
/// monitoring, a relay's poll) are not traced. The spans are OpenTelemetry's own, not `tracing`
/// spans: a command cancelled with its caller (no answer ever comes) must not keep the caller's
/// span open; it is ended, as an error, `COMMAND_ANSWER` after it started.
pub fn command_span(event: &mongodb::event::command::CommandEvent) {
    use mongodb::event::command::CommandEvent;
    use opentelemetry::{
        KeyValue,
        trace::{Span as _, SpanKind, Status, Tracer as _},
    };
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let open = || COMMANDS.lock().unwrap_or_else(|e| e.into_inner());
    match event {
        CommandEvent::Started(e) => {
            let parent = tracing::Span::current().context();
            if !parent.span().span_context().is_valid() {
                return;
            }
            let mut open = open();
            open.retain(|_, (started, span)| {
                let answered = started.elapsed() < COMMAND_ANSWER;
                if !answered {
                    span.set_status(Status::error("no answer: cancelled with its caller"));
                    span.end();
                }
                answered
            });
            let collection = crate::mongo::collection(e);
            let name = format!("{} {collection}", e.command_name)
                .trim_end()
                .to_owned();
            static TRACER: OnceLock<opentelemetry_sdk::trace::SdkTracer> = OnceLock::new();
            let tracer = TRACER.get_or_init(|| provider.tracer("storefront-kit"));
            let span = tracer
                .span_builder(name)
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("db.system", "mongodb"),
                    KeyValue::new("db.operation.name", e.command_name.clone()),
                    KeyValue::new("db.collection.name", collection.to_owned()),
                    KeyValue::new("db.namespace", e.db.clone()),
                ])
                .start_with_context(tracer, &parent);
            open.insert(e.request_id, (std::time::Instant::now(), span));
        }
        CommandEvent::Succeeded(e) => {
            if let Some((_, mut span)) = open().remove(&e.request_id) {
                span.end();
            }
        }
        CommandEvent::Failed(e) => {
            // Refusals the stores expect (a duplicate key, a write conflict) fail it too.
            if let Some((_, mut span)) = open().remove(&e.request_id) {
                span.set_status(Status::error(e.failure.to_string()));
                span.end();
            }
        }
        _ => {}
    }
}

/// Links `span` to `other` (a batch to each of its events' spans).
pub fn link_to(span: &tracing::Span, other: &tracing::Span) {
    let linked = other.context().span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// Runs `f` with spans recorded by OpenTelemetry (no exporter), as a service with traces on.
    fn traced<T>(f: impl FnOnce() -> T) -> T {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f)
    }

    fn only_traceparent<'a>(value: Option<&'a str>) -> impl Fn(&str) -> Option<&'a str> {
        move |name| if name == TRACEPARENT { value } else { None }
    }

    #[test]
    fn a_span_continues_the_callers_trace_and_passes_it_on_with_its_own_span_id() {
        traced(|| {
            let span = tracing::info_span!("request");
            continue_from(&span, only_traceparent(Some(CALLER)));
            let _entered = span.enter();
            let out = traceparent().expect("a trace context to pass on");
            assert!(
                out.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
                "{out}"
            );
            assert!(
                !out.contains("b7ad6b7169203331"),
                "{out}: the caller's span id"
            );
        });
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_trace_of_its_own() {
        traced(|| {
            for incoming in [
                None,
                Some("00-nonsense-01"),
                Some("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            ] {
                let span = tracing::info_span!("request");
                continue_from(&span, only_traceparent(incoming));
                let _entered = span.enter();
                let out = traceparent().expect("a trace of its own");
                assert!(!out.contains("0af7651916cd43dd8448eb211c80319c"), "{out}");
                assert!(!out.contains("-00000000000000000000000000000000-"), "{out}");
            }
        });
    }

    #[tokio::test]
    async fn in_a_batch_what_is_appended_for_a_key_continues_that_keys_event() {
        let _guard = tracing::subscriber::set_default({
            global::set_text_map_propagator(TraceContextPropagator::new());
            let provider = SdkTracerProvider::builder().build();
            tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        });
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let (first, second) = (tracing::info_span!("event"), tracing::info_span!("event"));
        continue_from(&first, only_traceparent(Some(CALLER)));
        continue_from(&second, only_traceparent(Some(other)));
        let by_key = [("order-1", &first), ("order-2", &second)]
            .into_iter()
            .map(|(key, span)| (key.to_owned(), traceparent_of(span).unwrap()))
            .collect();
        let batch = tracing::info_span!("events");
        link_to(&batch, &first);
        let _entered = batch.enter();
        let (one, two, product) = with_traces_by_key(by_key, async {
            (
                traceparent_for("order-1").unwrap(),
                traceparent_for("order-2").unwrap(),
                traceparent_for("a-product").unwrap(),
            )
        })
        .await;
        assert!(one.contains("0af7651916cd43dd8448eb211c80319c"), "{one}");
        assert!(two.contains("11111111111111111111111111111111"), "{two}");
        // A key no event of the batch had: the batch's own trace.
        assert!(
            !product.contains("0af7651916cd43dd8448eb211c80319c"),
            "{product}"
        );
        assert!(
            !product.contains("11111111111111111111111111111111"),
            "{product}"
        );
        // Outside a batch: the current span's.
        assert_eq!(traceparent_for("order-1"), traceparent());
    }

    #[test]
    fn log_lines_in_a_span_name_its_trace() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let logs = fmt::layer()
            .json()
            .with_writer({
                let written = written.clone();
                move || Buffer(written.clone())
            })
            .with_filter(LevelFilter::INFO);
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(logs)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        global::set_text_map_propagator(TraceContextPropagator::new());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
            continue_from(&span, only_traceparent(Some(CALLER)));
            span.in_scope(|| tracing::info!("handled"));
        });
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(r#""trace_id":"0af7651916cd43dd8448eb211c80319c""#),
            "{text}"
        );
    }

    /// A log writer into memory.
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn with_traces_off_nothing_is_passed_on() {
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let span = tracing::info_span!("request");
            continue_from(&span, only_traceparent(Some(CALLER)));
            let _entered = span.enter();
            assert_eq!(traceparent(), None);
        });
    }
}
