//! One request: its context made when it arrives, the phases run over it (`phases/`), its answer
//! sent — the problem document when a phase refused it — and its `complete` audit event written
//! from the context, whatever happened.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderValue, Request, Response};
use invoiceguard_telemetry::throttle;
use tracing::Instrument;

use crate::audit_trail::Ended;
use crate::body::ClientBody;
use crate::context::{Connection, RequestContext};
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::Gateway;
use crate::headers::REQUEST_ID;

/// Counts the request in the metrics: by route template, action, decision and status class —
/// bounded labels only.
fn observe(event: &invoiceguard_audit::AuditEvent, error: Option<&GatewayError>) {
    let metrics = invoiceguard_telemetry::metrics();
    let route = event.request.route.as_deref().unwrap_or("none");
    metrics
        .requests
        .with_label_values(&[
            route,
            event.action.as_deref().unwrap_or("none"),
            event.decision.effect,
            invoiceguard_telemetry::status_class(event.outcome.status),
        ])
        .inc();
    metrics
        .request_duration
        .with_label_values(&[route])
        .observe(event.outcome.duration_ms / 1000.0);
    let upstream_error = |kind| metrics.upstream_errors.with_label_values(&[kind]).inc();
    match error {
        Some(GatewayError::Unauthenticated(e)) => {
            metrics.auth_failures.with_label_values(&[e.reason()]).inc();
        }
        Some(GatewayError::UpstreamUnreachable(_)) => upstream_error("connect"),
        Some(GatewayError::UpstreamTimeout) => upstream_error("timeout"),
        _ => {}
    }
}

/// One request counted in flight until it is dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts the request in; also returns how many were in flight before it.
    fn enter(counter: &'a AtomicUsize) -> (Self, usize) {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        (Self(counter), before)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gateway {
    /// Handles one request and writes its audit event. Never fails: every error becomes its
    /// problem answer. The body may be any (hyper's from a connection, or one made in memory).
    pub async fn handle<B: ClientBody>(
        &self,
        request: Request<B>,
        connection: &Connection,
    ) -> Response<ResponseBody> {
        let policy = self.policies.current();
        let (_in_flight, before) = InFlight::enter(&self.in_flight);
        let (head, body) = request.into_parts();
        let mut ctx = RequestContext::new(&head, connection, policy.as_deref());
        let span = self.request_span(&mut ctx);
        let decided = if policy.is_none() {
            Err(GatewayError::PolicyUnavailable)
        } else if before >= self.limits.max_in_flight {
            Err(GatewayError::Overloaded)
        } else {
            let request = Request::from_parts(head, body);
            crate::phases::run(self, request, &mut ctx)
                .instrument(span)
                .await
        };
        self.answer(ctx, decided)
    }

    /// The span of a request; with spans exported, the exporter's ids are the ones the upstream
    /// and the event get.
    fn request_span(&self, ctx: &mut RequestContext<'_>) -> tracing::Span {
        let span = tracing::info_span!(
            "request",
            request_id = %ctx.request_id,
            trace_from_client = ctx.trace.from_client,
        );
        if invoiceguard_telemetry::exporting() {
            let trace = &ctx.trace;
            let client = trace
                .parent_id
                .as_deref()
                .map(|parent| (trace.trace_id.as_str(), parent, trace.sampled));
            if let Some(ids) = invoiceguard_telemetry::continue_trace(&span, client) {
                ctx.trace.adopt(ids);
            }
        }
        span
    }

    /// The answer to the request (its problem document when refused), after its audit event.
    fn answer(
        &self,
        mut ctx: RequestContext<'_>,
        decided: Result<Response<ResponseBody>, GatewayError>,
    ) -> Response<ResponseBody> {
        let request_id = ctx.request_id.clone();
        let (mut response, error) = match decided {
            Ok(response) => (response, None),
            Err(error) => {
                if error.side() == crate::error::Side::Client {
                    tracing::debug!(%request_id, %error, "request refused");
                } else if let Some(held_back) = throttle("request failed") {
                    tracing::warn!(%request_id, %error, held_back, "request failed");
                }
                let mfa_acr = &self.authn.config().mfa_acr;
                (error.to_response(&request_id, mfa_acr), Some(error))
            }
        };
        let status = response.status().as_u16();
        let ended = Ended {
            status,
            upstream_status: (error.is_none() && ctx.own.is_none()).then_some(status),
            response_bytes: hyper::body::Body::size_hint(response.body()).exact(),
            error: error.as_ref(),
            policy_version: ctx.policy.map_or("none", |policy| policy.version()),
        };
        let event = crate::audit_trail::finished_event(&mut ctx, &ended);
        observe(&event, error.as_ref());
        self.record(event, &request_id, error.as_ref());
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        response
    }

    /// Writes a request's finished event: one that reached the upstream as any event, a refusal
    /// as one (which may be dropped, counted, when the spool is failing and memory is full).
    fn record(
        &self,
        event: invoiceguard_audit::AuditEvent,
        request_id: &str,
        error: Option<&GatewayError>,
    ) {
        let forwarded = event.outcome.upstream_status.is_some()
            || matches!(
                error,
                Some(GatewayError::UpstreamUnreachable(_) | GatewayError::UpstreamTimeout)
            );
        let recorded = if forwarded {
            self.audit.record(event)
        } else {
            self.audit.record_refusal(event)
        };
        if let Err(error) = recorded
            && let Some(held_back) = throttle("audit event not written")
        {
            tracing::error!(%request_id, %error, held_back, "audit event not written");
        }
    }
}
