//! The operator's Prometheus metrics, served on `/metrics` by the binary: reconciles, their
//! duration, and failures by error variant (the same label as the log line).

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounter,
    pub duration: Histogram,
    pub failures: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconciles = IntCounter::new(
            "storefront_operator_reconciles_total",
            "Reconciles of Storefronts started",
        )
        .expect("static metric definition");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "storefront_operator_reconcile_duration_seconds",
                "How long a reconcile took",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .expect("static metric definition");
        let failures = IntCounterVec::new(
            Opts::new(
                "storefront_operator_reconcile_failures_total",
                "Failed reconciles, by error variant",
            ),
            &["error"],
        )
        .expect("static metric definition");
        for metric in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(failures.clone()),
        ] {
            registry.register(metric).expect("registered once");
        }
        Metrics {
            registry,
            reconciles,
            duration,
            failures,
        }
    }

    /// The failures counted with this error variant.
    pub fn failures_of(&self, variant: &str) -> u64 {
        self.failures.with_label_values(&[variant]).get()
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("metrics encode");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}
