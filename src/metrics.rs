//! Owns the Prometheus metrics: one registry, named by convention, with bounded labels
//! (source id, department, kind, result — never URLs).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceResult {
    pub source: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemOutcome {
    pub source: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub department: String,
    pub level: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub fetches: Family<SourceResult, Counter>,
    pub fetch_duration: Family<SourceLabel, Histogram>,
    pub fetch_bytes: Family<SourceLabel, Counter>,
    pub items: Family<ItemOutcome, Counter>,
    pub alerts: Family<AlertLabels, Counter>,
    pub deliveries: Family<ResultLabel, Counter>,
    pub outbox_depth: Gauge,
    pub outbox_oldest_seconds: Gauge<f64, AtomicU64>,
    pub source_healthy: Family<SourceLabel, Gauge>,
    pub store_bytes: Gauge,
    pub reloads: Family<ResultLabel, Counter>,
    pub ops_alerts: Family<ResultLabel, Counter>,
}

fn duration_histogram() -> Histogram {
    // 50 ms … ~100 s: fetches of slow government sites included.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.05, 2.0, 12,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tingfeng");
        let fetches = Family::<SourceResult, Counter>::default();
        registry.register(
            "fetches",
            "Source polls by result (ok, not_modified, or the failure reason)",
            fetches.clone(),
        );
        let fetch_duration = Family::<SourceLabel, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "fetch_duration_seconds",
            "Time one poll of a source takes (all pages, detail pages and the store write)",
            fetch_duration.clone(),
        );
        let fetch_bytes = Family::<SourceLabel, Counter>::default();
        registry.register("fetch_bytes", "Body bytes received", fetch_bytes.clone());
        let items = Family::<ItemOutcome, Counter>::default();
        registry.register(
            "items",
            "Items seen by outcome (new, duplicate, too_old)",
            items.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register("alerts_raised", "Alerts raised", alerts.clone());
        let deliveries = Family::<ResultLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Webhook delivery attempts by result (delivered, retry, dead)",
            deliveries.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Alerts waiting for delivery",
            outbox_depth.clone(),
        );
        let outbox_oldest_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest undelivered alert",
            outbox_oldest_seconds.clone(),
        );
        let source_healthy = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_healthy",
            "1 while a source's last poll succeeded, else 0",
            source_healthy.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_size_bytes",
            "Size of the store on disk",
            store_bytes.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        let ops_alerts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "ops_alerts",
            "Source-health alerts raised for operators by kind",
            ops_alerts.clone(),
        );
        Metrics {
            registry,
            fetches,
            fetch_duration,
            fetch_bytes,
            items,
            alerts,
            deliveries,
            outbox_depth,
            outbox_oldest_seconds,
            source_healthy,
            store_bytes,
            reloads,
            ops_alerts,
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn fetch(&self, source: &str, result: &str) {
        self.fetches
            .get_or_create(&SourceResult {
                source: source.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn item(&self, source: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.items
                .get_or_create(&ItemOutcome {
                    source: source.to_string(),
                    outcome: outcome.to_string(),
                })
                .inc_by(n);
        }
    }

    pub fn delivery(&self, result: &str) {
        self.deliveries
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn bytes(&self, source: &str, n: usize) {
        self.fetch_bytes
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .inc_by(n as u64);
    }

    pub fn healthy(&self, source: &str, ok: bool) {
        self.source_healthy
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .set(i64::from(ok));
    }
}
