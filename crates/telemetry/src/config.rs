//! The `[telemetry]` section of the configuration.

use serde::Deserialize;

/// Logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` (for people) or `json` (one object per line, for log collectors).
    #[serde(default)]
    pub log_format: LogFormat,
    /// An OTLP/HTTP (protobuf) traces endpoint, e.g. `http://otel-collector:4318/v1/traces`;
    /// spans are exported there when set. Off by default.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share of traces the gateway starts that are exported (0 to 1); a client's trace
    /// follows the client's sampling decision.
    #[serde(default = "default_ratio")]
    pub sample_ratio: f64,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_service_name() -> String {
    "invoiceguard".to_owned()
}

fn default_ratio() -> f64 {
    1.0
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_ratio(),
        }
    }
}

impl TelemetryConfig {
    /// Checks the section, naming each problem with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problems.push(format!(
                "telemetry.otlp_endpoint: `{endpoint}` is not an http(s) URL"
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push("telemetry.sample_ratio: between 0 and 1".to_owned());
        }
        if self.service_name.is_empty() {
            problems.push("telemetry.service_name: must not be empty".to_owned());
        }
        problems
    }
}
