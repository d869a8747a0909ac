//! Telemetry for invoiceguard: what operators see of the gateway. Metrics from one typed list
//! ([`metrics`], Prometheus text format on `/metrics`); logs as text or JSON lines on standard
//! error; and spans (`request` › `authenticate`, `authorize`, `forward`) exported over OTLP/HTTP
//! when an endpoint is configured, continuing the client's W3C trace ([`subscriber`]); a failure
//! that repeats on every request logs once a second ([`throttle`]).

mod config;
mod metrics;
mod subscriber;
mod throttle;

pub use config::{LogFormat, TelemetryConfig};
pub use metrics::{Metrics, metrics, status_class};
pub use subscriber::{Telemetry, continue_trace, exporting, init};
pub use throttle::throttle;
