//! Where logs and spans go: a `tracing` subscriber writing text or JSON lines to standard error
//! (filtered by `INVOICEGUARD_LOG`), and, with `[telemetry] otlp_endpoint`, an OpenTelemetry layer
//! that exports spans over OTLP/HTTP in batches from the tokio runtime.

use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Whether spans are exported (set once, by [`init`]).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported: without an exporter there is no trace context to continue.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The installed subscriber; [`Telemetry::shutdown`] exports the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops exporting (at shutdown).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "spans not exported at shutdown");
        }
    }
}

/// Installs the global subscriber; spans are exported from a thread of their own. An exporter
/// that cannot be built is reported and left out; logs still work.
pub fn init(config: &TelemetryConfig) -> Telemetry {
    // Log lines carry no spans: a request's own lines name its id, and formatting the spans for
    // every request cost the log layer about two microseconds whether or not a line was written.
    // The spans are the exporter's; without one they are not made at all.
    let filter = || {
        EnvFilter::try_from_env("INVOICEGUARD_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info"))
            .and(filter_fn(|meta| !meta.is_span()))
    };
    let logs = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    };
    let (provider, problem) = match &config.otlp_endpoint {
        Some(endpoint) => match exporter(config, endpoint) {
            Ok(provider) => (Some(provider), None),
            Err(error) => (None, Some(error)),
        },
        None => (None, None),
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("invoiceguard"))
            .with_filter(EnvFilter::new("invoiceguard_gateway=info"))
    });
    // Without an exporter there is no spans layer at all (an absent `Option` layer would still
    // have every span made, for nobody).
    let logging = tracing_subscriber::registry().with(logs);
    let installed = match spans {
        Some(spans) => logging.with(spans).try_init(),
        None => logging.try_init(),
    };
    EXPORTING.store(
        provider.is_some() && installed.is_ok(),
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Err(error) = installed {
        eprintln!("invoiceguard: cannot install the log subscriber: {error}");
    }
    if let Some(error) = problem {
        tracing::error!(%error, "spans are not exported");
    } else if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(%endpoint, "exporting spans over OTLP/HTTP");
    }
    Telemetry { provider }
}

fn exporter(config: &TelemetryConfig, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no system roots for https: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client =
        opentelemetry_http::hyper::HyperClient::new(connector, Duration::from_secs(10), None);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(endpoint)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| e.to_string())?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            // Batches are exported from a thread of their own (its own single-threaded runtime):
            // never on the request threads, and flushing at shutdown cannot wait on a runtime
            // that is blocked flushing — which it would on a single-threaded gateway.
            opentelemetry_sdk::runtime::TokioCurrentThread,
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

/// Makes `span` continue the client's trace (`trace_id` and its `parent_id`, hex) when spans are
/// exported. Returns the trace id, span id (hex) and sampled flag the span got from the
/// exporter — what the upstream must receive — or `None` when nothing is exported.
pub fn continue_trace(
    span: &tracing::Span,
    client: Option<(&str, &str, bool)>,
) -> Option<(String, String, bool)> {
    if let Some((trace_id, parent_id, sampled)) = client
        && let (Ok(trace_id), Ok(parent_id)) =
            (TraceId::from_hex(trace_id), SpanId::from_hex(parent_id))
    {
        let remote = SpanContext::new(
            trace_id,
            parent_id,
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid().then(|| {
        (
            own.trace_id().to_string(),
            own.span_id().to_string(),
            own.is_sampled(),
        )
    })
}
