//! The gateway: its parts, shared by every connection (authenticator, policies, upstream, audit
//! log, state), and the entry of every request — its context made, the phases run
//! (`phases/`), its audit event written whatever happened, its answer sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use invoiceguard_audit::AuditLog;
use invoiceguard_authn::Authenticator;
use invoiceguard_state::StateStore;
use invoiceguard_telemetry::throttle;
use tracing::Instrument;

use crate::audit_trail::Ended;
use crate::body::{BodyTimes, ClientBody};
use crate::config::{Config, LimitsConfig};
use crate::context::{Connection, RequestContext};
use crate::error::{GatewayError, ResponseBody};
use crate::headers::REQUEST_ID;
use crate::reload::Policies;
use crate::revocation::Revocations;
use crate::upstream::Upstream;

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

/// The gateway's parts, shared by every connection.
pub struct Gateway {
    pub(crate) authn: Arc<Authenticator>,
    pub(crate) policies: Arc<Policies>,
    pub(crate) upstream: Upstream,
    pub(crate) audit: AuditLog,
    pub(crate) state: Arc<StateStore>,
    pub(crate) revocations: Arc<Revocations>,
    pub(crate) limits: LimitsConfig,
    pub(crate) api_key_header: http::HeaderName,
    /// Actions whose `authorized` event must be durable before forwarding.
    pub(crate) sensitive: Vec<String>,
    pub(crate) audit_fail_open: bool,
    /// How long a client may take over its request body.
    pub(crate) body_times: BodyTimes,
    /// The host names answered for (lowercase, IPv6 without brackets); empty: any.
    pub(crate) hosts: Vec<String>,
    /// Requests being handled now (`limits.max_in_flight` at most).
    in_flight: AtomicUsize,
    /// The admin listener's token, replaced when the credentials are reloaded.
    admin_token: crate::credentials::AdminToken,
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

/// The gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The audit file cannot be opened.
    #[error(transparent)]
    Audit(#[from] invoiceguard_audit::AuditError),
    /// The upstream client cannot be built.
    #[error("{0}")]
    Upstream(String),
    /// The authenticator cannot be built.
    #[error(transparent)]
    Authn(#[from] invoiceguard_authn::AuthnError),
    /// The state store cannot be opened.
    #[error(transparent)]
    State(#[from] invoiceguard_state::StateError),
    /// The admin token cannot be read.
    #[error("{0}")]
    Admin(String),
}

impl Gateway {
    /// Builds every part: the audit spool must open (the gateway refuses to start without it);
    /// the policies may have problems (the gateway then refuses requests and reports unready
    /// until they are fixed), the IdP may still be down (its keys are fetched in the
    /// background).
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let audit = AuditLog::open(&config.audit)?;
        let policies = Arc::new(Policies::load(&config.policy));
        policies.spawn_watch();
        let api_key_header = http::HeaderName::from_bytes(config.authn.api_key_header.as_bytes())
            .map_err(|_| {
            StartError::Upstream("authn.api_key_header is not a header name".to_owned())
        })?;
        let upstream = Upstream::new(&config.upstream, api_key_header.clone())
            .map_err(StartError::Upstream)?;
        let state = Arc::new(StateStore::open(&config.state)?);
        let revocations = Arc::new(Revocations::default());
        revocations.refresh(&state).await;
        revocations.spawn_sync(state.clone());
        let authn = Authenticator::start(config.authn.clone()).await?;
        authn.spawn_refresh();
        Ok(Self {
            authn,
            policies,
            upstream,
            audit,
            state,
            revocations,
            limits: config.limits.clone(),
            api_key_header,
            sensitive: config.audit.sensitive_actions.clone(),
            audit_fail_open: config.audit.fail_open,
            body_times: BodyTimes {
                pause: Duration::from_millis(config.listen.body_timeout_ms),
                deadline: Duration::from_millis(config.body_deadline_ms()),
            },
            hosts: config
                .listen
                .hosts
                .iter()
                .map(|host| crate::phases::bare_host(host).to_ascii_lowercase())
                .collect(),
            in_flight: AtomicUsize::new(0),
            admin_token: crate::credentials::AdminToken::load(config.admin.token_file.as_deref())
                .map_err(StartError::Admin)?,
        })
    }

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
            upstream_status: error.is_none().then_some(status),
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

    /// The audit log.
    pub(crate) fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The authenticator.
    pub(crate) fn authn(&self) -> &Authenticator {
        &self.authn
    }

    /// The admin listener's token in force.
    pub(crate) fn admin_token(&self) -> &crate::credentials::AdminToken {
        &self.admin_token
    }

    /// The state store.
    pub(crate) fn state(&self) -> &StateStore {
        &self.state
    }

    /// Whether the gateway can serve: policies loaded, every IdP's keys fetched, the state store
    /// answering, the audit spool taking events; and the details.
    pub(crate) async fn readiness(&self) -> (bool, serde_json::Value) {
        let policies_loaded = self.policies.current().is_some();
        let idp_keys = self.authn.is_ready();
        let state = self.state.ping().await;
        let revocations_loaded = self.revocations.is_loaded();
        let ready = policies_loaded
            && idp_keys
            && state.is_ok()
            && revocations_loaded
            && self.audit.is_writable();
        let report = serde_json::json!({
            "ready": ready,
            "policies_loaded": policies_loaded,
            "policy_version": self.policies.version(),
            "policy_reloads_refused": self.policies.refused.load(std::sync::atomic::Ordering::Relaxed),
            "idp_keys": idp_keys,
            "audit": {"spool": self.audit.dir(), "writable": self.audit.is_writable(), "last_seq": self.audit.last_seq()},
            "state": {"backend": self.state.backend(), "reachable": state.is_ok(), "revocations_loaded": revocations_loaded, "errors_total": self.state.errors()},
        });
        (ready, report)
    }

    /// Revokes a subject on every replica (the admin listener records it in the audit trail).
    pub(crate) async fn revoke(
        &self,
        subject: &str,
        until_unix: u64,
    ) -> Result<(), invoiceguard_state::StateError> {
        self.state.revoke(subject, until_unix).await?;
        self.revocations.refresh(&self.state).await;
        Ok(())
    }

    /// Lifts a revocation on every replica: `Ok(false)` when the subject was not revoked.
    pub(crate) async fn lift(&self, subject: &str) -> Result<bool, invoiceguard_state::StateError> {
        if !self.state.revocations().await?.contains_key(subject) {
            return Ok(false);
        }
        self.state.lift(subject).await?;
        self.revocations.refresh(&self.state).await;
        Ok(true)
    }

    /// Records a request the HTTP layer refused before it reached the phases.
    pub(crate) fn record_malformed(&self, peer: SocketAddr, status: u16, detail: &str) {
        let event =
            crate::audit_trail::malformed_event(peer, status, detail, &self.policies.version());
        if let Err(error) = self.audit.record_refusal(event)
            && let Some(held_back) = throttle("audit event of a malformed request not written")
        {
            tracing::error!(%error, held_back, "audit event of a malformed request not written");
        }
    }

    /// Records a request to the revocation endpoints.
    pub(crate) fn record_admin(&self, act: crate::audit_trail::AdminAct<'_>) {
        let event = crate::audit_trail::admin_event(act, &self.policies.version());
        if let Err(error) = self.audit.record(event) {
            tracing::error!(%error, "audit event of an admin request not written");
        }
    }
}
