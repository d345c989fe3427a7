//! `GET /metrics`: the server's counters in the Prometheus (OpenMetrics) text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request's route (the matched path) and response status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The route, e.g. `/v1/embeddings`.
    pub route: String,
    /// The HTTP status code.
    pub status: u16,
}

/// A route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    /// The route, e.g. `/v1/embeddings`.
    pub route: String,
}

/// Every metric the server keeps, and their registry.
pub(crate) struct Metrics {
    registry: Registry,
    /// `mtl_requests_total{route, status}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `mtl_request_duration_seconds{route}`: from the request's arrival to its response.
    pub latency: Family<RouteLabels, Histogram>,
    /// `mtl_batch_size`: texts per model batch.
    pub batch_size: Histogram,
    /// `mtl_queue_depth`: requests waiting for the model thread.
    pub queue_depth: Gauge,
    /// `mtl_texts_total`: texts embedded or predicted.
    pub texts: Counter,
    /// `mtl_tokens_total`: tokens embedded (special tokens included, padding not).
    pub tokens: Counter,
    /// `mtl_texts_dropped_total`: queued texts not embedded because their client had gone
    /// (or their request had already failed).
    pub texts_dropped: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    /// Fresh metrics, registered under the `mtl_` prefix.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("mtl");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let queue_depth = Gauge::default();
        let texts = Counter::default();
        let tokens = Counter::default();
        let texts_dropped = Counter::default();
        registry.register(
            "requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response, by route",
            latency.clone(),
        );
        registry.register("batch_size", "Texts per model batch", batch_size.clone());
        registry.register(
            "queue_depth",
            "Requests waiting for the model thread",
            queue_depth.clone(),
        );
        registry.register("texts", "Texts embedded or predicted", texts.clone());
        registry.register(
            "tokens",
            "Tokens embedded (special tokens included, padding not)",
            tokens.clone(),
        );
        registry.register(
            "texts_dropped",
            "Queued texts not embedded because their client had gone or their request had failed",
            texts_dropped.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            batch_size,
            queue_depth,
            texts,
            tokens,
            texts_dropped,
        }
    }

    /// The text exposition of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
