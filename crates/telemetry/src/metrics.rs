//! Every metric the gateway exports, in one typed list, rendered in the Prometheus text format on
//! the admin listener's `/metrics`. Labels are bounded sets — route templates, actions,
//! decisions, status classes, reasons, sink names — never user ids, tokens or raw paths, so a
//! hostile client cannot grow the series count.

use std::sync::{Mutex, OnceLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the gateway.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route template (`none` when no route matched), action, decision
    /// (`allow` / `deny`) and status class (`2xx`…).
    pub requests: IntCounterVec,
    /// Time from receiving a request to its response head, by route template.
    pub request_duration: HistogramVec,
    /// Requests whose caller could not be authenticated, by reason (`expired`, `bad_signature`…).
    pub auth_failures: IntCounterVec,
    /// Time to decide one request (evaluated, or from the decision cache).
    pub policy_evaluation: Histogram,
    /// Policy sets put in force or refused, by result: `initial` (the set loaded at start),
    /// `loaded` (a reload), `refused` (a folder with problems, at start or on a reload).
    pub policy_reloads: IntCounterVec,
    /// The loaded policy-set version: one series with value 1.
    pub policy_version: IntGaugeVec,
    /// JWKS fetches, by result (`ok` / `error`).
    pub jwks_refreshes: IntCounterVec,
    /// Failed calls to the state store.
    pub state_errors: IntCounter,
    /// Requests the upstream failed, by kind (`connect`, `timeout`, `protocol`).
    pub upstream_errors: IntCounterVec,
    /// Client connections closed by the gateway before or instead of a request, by reason
    /// (`max_connections`, `max_connections_per_ip`, `malformed`, `header_timeout` — which also
    /// counts keep-alive connections left idle that long).
    pub connections_refused: IntCounterVec,
    /// Audit events written to the spool.
    pub audit_events_written: IntCounter,
    /// Audit events that could not be written (the disk failed, or the spool is full).
    pub audit_write_failures: IntCounter,
    /// Bytes in the audit spool.
    pub audit_spool_bytes: IntGauge,
    /// Audit events delivered, by sink.
    pub audit_events_shipped: IntCounterVec,
    /// Failed deliveries retried, by sink.
    pub audit_sink_retries: IntCounterVec,
    /// Events written and not yet delivered, by sink.
    pub audit_sink_lag: IntGaugeVec,
    /// Audit events kept in memory because the spool could not be written (a full or failing
    /// disk); they are written, in order, as soon as it can be.
    pub audit_events_held: IntGauge,
    /// Audit events of refused requests lost because the spool could not be written and the
    /// memory that holds such events was full.
    pub audit_events_dropped: IntCounter,
    /// Torn spool tails cut at start (a line half written when the process died or the disk
    /// filled).
    pub audit_spool_repairs: IntCounter,
    /// Events a file sink found already in its file after a restart and did not append again,
    /// by sink.
    pub audit_sink_duplicates_skipped: IntCounterVec,
    /// Export reservations that could not be released or settled (they count against the
    /// quota until the day's window passes).
    pub export_reservation_failures: IntCounter,
    /// 1 while the state store answers; 0 while it is marked down after a failure (calls that
    /// need it fail at once until a background probe gets an answer).
    pub state_up: IntGauge,
    /// Threads serving requests (1: the single-threaded runtime, see `listen.worker_threads`).
    pub worker_threads: IntGauge,
    /// Set gauges from live state just before each scrape (e.g. each sink's lag).
    on_scrape: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

/// The metrics, registered on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Seconds buckets from 100 µs to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Seconds buckets from 5 µs to 10 ms.
const POLICY_BUCKETS: &[f64] = &[
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01,
];

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "names, labels and buckets are constants; the unit test builds them all"
    )]
    fn new() -> Self {
        let registry =
            Registry::new_custom(Some("invoiceguard".to_owned()), None).expect("a valid prefix");
        let register = |metric: Box<dyn prometheus::core::Collector>| {
            registry.register(metric).expect("unique metric names");
        };
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid name");
            register(Box::new(metric.clone()));
            metric
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid name");
            register(Box::new(metric.clone()));
            metric
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("a valid name");
            register(Box::new(metric.clone()));
            metric
        };
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from receiving a request to its response head.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("a valid histogram");
        register(Box::new(request_duration.clone()));
        let policy_evaluation = Histogram::with_opts(
            HistogramOpts::new(
                "policy_evaluation_seconds",
                "Time to decide one request (evaluated, or from the decision cache).",
            )
            .buckets(POLICY_BUCKETS.to_vec()),
        )
        .expect("a valid histogram");
        register(Box::new(policy_evaluation.clone()));
        let audit_spool_bytes =
            IntGauge::new("audit_spool_bytes", "Bytes in the audit spool.").expect("a valid name");
        register(Box::new(audit_spool_bytes.clone()));
        let worker_threads = IntGauge::new(
            "worker_threads",
            "Threads serving requests (1: the single-threaded runtime).",
        )
        .expect("a valid name");
        register(Box::new(worker_threads.clone()));
        let audit_events_held = IntGauge::new(
            "audit_events_held",
            "Audit events kept in memory until the spool can be written again.",
        )
        .expect("a valid name");
        register(Box::new(audit_events_held.clone()));
        let state_up = IntGauge::new(
            "state_up",
            "1 while the state store answers, 0 while it is marked down.",
        )
        .expect("a valid name");
        state_up.set(1);
        register(Box::new(state_up.clone()));
        Self {
            requests: counters(
                "requests_total",
                "Requests answered, by route template, action, decision and status class.",
                &["route", "action", "decision", "status"],
            ),
            request_duration,
            auth_failures: counters(
                "authentication_failures_total",
                "Requests whose caller could not be authenticated, by reason.",
                &["reason"],
            ),
            policy_evaluation,
            policy_reloads: counters(
                "policy_reloads_total",
                "Policy sets put in force or refused: initial (at start), loaded (a reload), refused.",
                &["result"],
            ),
            policy_version: gauges(
                "policy_version_info",
                "The loaded policy-set version (value 1).",
                &["version"],
            ),
            jwks_refreshes: counters(
                "jwks_refreshes_total",
                "JWKS fetches, by result.",
                &["result"],
            ),
            state_errors: counter("state_errors_total", "Failed calls to the state store."),
            upstream_errors: counters(
                "upstream_errors_total",
                "Requests the upstream failed, by kind.",
                &["kind"],
            ),
            connections_refused: counters(
                "connections_refused_total",
                "Client connections closed by the gateway before or instead of a request, by reason.",
                &["reason"],
            ),
            audit_events_written: counter(
                "audit_events_written_total",
                "Audit events written to the spool.",
            ),
            audit_write_failures: counter(
                "audit_write_failures_total",
                "Audit events that could not be written.",
            ),
            audit_spool_bytes,
            audit_events_shipped: counters(
                "audit_events_shipped_total",
                "Audit events delivered, by sink.",
                &["sink"],
            ),
            audit_sink_retries: counters(
                "audit_sink_retries_total",
                "Failed deliveries retried, by sink.",
                &["sink"],
            ),
            audit_sink_lag: gauges(
                "audit_sink_lag_events",
                "Events written and not yet delivered, by sink.",
                &["sink"],
            ),
            audit_events_held,
            audit_events_dropped: counter(
                "audit_events_dropped_total",
                "Audit events of refused requests lost: the spool could not be written and the memory holding them was full.",
            ),
            audit_spool_repairs: counter(
                "audit_spool_repairs_total",
                "Torn spool tails cut at start.",
            ),
            audit_sink_duplicates_skipped: counters(
                "audit_sink_duplicates_skipped_total",
                "Events a file sink found already in its file after a restart, by sink.",
                &["sink"],
            ),
            export_reservation_failures: counter(
                "export_reservation_failures_total",
                "Export reservations that could not be released or settled.",
            ),
            state_up,
            worker_threads,
            on_scrape: Mutex::new(Vec::new()),
            registry,
        }
    }

    /// Runs `update` before each scrape, to set gauges from live state.
    pub fn on_scrape(&self, update: impl Fn() + Send + Sync + 'static) {
        self.on_scrape
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(update));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        for update in self
            .on_scrape
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            update();
        }
        let mut out = Vec::new();
        // Encoding into memory only fails on invalid metric names, which this list has none of.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Sets the loaded policy-set version (the previous one's series is removed).
    pub fn set_policy_version(&self, version: &str) {
        self.policy_version.reset();
        self.policy_version.with_label_values(&[version]).set(1);
    }
}

/// The status class of an HTTP status: `2xx`, `4xx`…
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let metrics = metrics();
        metrics
            .requests
            .with_label_values(&["/invoices/{id}", "invoice:read", "allow", "2xx"])
            .inc();
        metrics.set_policy_version("abc");
        metrics.set_policy_version("def");
        metrics.policy_evaluation.observe(0.00004);
        let text = metrics.render();
        assert!(text.contains(
            "invoiceguard_requests_total{action=\"invoice:read\",decision=\"allow\",route=\"/invoices/{id}\",status=\"2xx\"} 1"
        ), "{text}");
        assert!(text.contains("invoiceguard_policy_version_info{version=\"def\"} 1"));
        assert!(
            !text.contains("version=\"abc\""),
            "the old version's series is gone"
        );
        assert!(text.contains("invoiceguard_policy_evaluation_seconds_bucket{le=\"0.00005\"} 1"));
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
    }
}
