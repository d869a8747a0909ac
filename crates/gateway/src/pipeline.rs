//! One request, phase by phase: normalize → route → authenticate → authorize → forward, and its
//! audit event whatever happens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use invoiceguard_audit::AuditLog;
use invoiceguard_authn::{AuthMethod, Authenticator, Credentials, PrincipalKind, claimed_subject};
use invoiceguard_policy::{ExportFacts, PolicyEngine, RequestFacts};
use invoiceguard_state::StateStore;
use invoiceguard_telemetry::throttle;
use rustls::pki_types::CertificateDer;
use tracing::Instrument;

use crate::audit_trail::Trail;
use crate::body::{BodyError, BodyTimes, GuardedBody};
use crate::config::{Config, LimitsConfig};
use crate::error::{GatewayError, ResponseBody};
use crate::form_override::FormScan;
use crate::forward::{ForwardContext, REQUEST_ID, Upstream};
use crate::reload::Policies;
use crate::reservation::HeldExport;
use crate::revocation::Revocations;
use crate::{enrich, normalize, settle};

/// The largest export request body read (to find the rows it asks for).
const MAX_EXPORT_REQUEST_BYTES: usize = 64 * 1024;

/// The header in which a break-glass account states its reason; never forwarded.
pub(crate) const BREAK_GLASS_HEADER: &str = "x-break-glass-reason";

/// The longest break-glass reason accepted.
const MAX_BREAK_GLASS_REASON: usize = 256;

/// The request's break-glass reason: printable, at most 256 bytes, or a bad request.
fn break_glass_reason(headers: &http::HeaderMap) -> Result<Option<String>, GatewayError> {
    let Some(value) = headers.get(BREAK_GLASS_HEADER) else {
        return Ok(None);
    };
    let reason = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.len() <= MAX_BREAK_GLASS_REASON && !r.chars().any(char::is_control))
        .ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "`{BREAK_GLASS_HEADER}` must be printable text of 1 to {MAX_BREAK_GLASS_REASON} bytes"
            ))
        })?;
    Ok(Some(reason.to_owned()))
}

/// Whether a request may change something upstream: every method but `GET`, `HEAD` and
/// `OPTIONS` (which HTTP defines as safe) gets an `authorized` event before it is forwarded.
fn changes_state(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// Gives an export's held rows back now, if there are any.
async fn release(held: Option<HeldExport>) {
    if let Some(held) = held {
        held.release().await;
    }
}

/// A host name without IPv6 brackets.
fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

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
    match error {
        Some(GatewayError::Unauthenticated(e)) => {
            metrics.auth_failures.with_label_values(&[e.reason()]).inc();
        }
        Some(GatewayError::UpstreamUnreachable(_)) => {
            metrics
                .upstream_errors
                .with_label_values(&["connect"])
                .inc();
        }
        Some(GatewayError::UpstreamTimeout) => {
            metrics
                .upstream_errors
                .with_label_values(&["timeout"])
                .inc();
        }
        _ => {}
    }
}

/// The gateway's parts, shared by every connection.
pub struct Gateway {
    authn: Arc<Authenticator>,
    policies: Arc<Policies>,
    upstream: Upstream,
    audit: AuditLog,
    state: Arc<StateStore>,
    revocations: Arc<Revocations>,
    limits: LimitsConfig,
    api_key_header: http::HeaderName,
    /// Actions whose `authorized` event must be durable before forwarding.
    sensitive: Vec<String>,
    audit_fail_open: bool,
    /// How long a client may take over its request body.
    body_times: BodyTimes,
    /// The host names answered for (lowercase, IPv6 without brackets); empty: any.
    hosts: Vec<String>,
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

/// What the accept phase knows about a connection.
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client's certificate, verified against the listener's client CA.
    pub client_certificate: Option<CertificateDer<'static>>,
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
                .map(|host| bare_host(host).to_ascii_lowercase())
                .collect(),
            in_flight: AtomicUsize::new(0),
            admin_token: crate::credentials::AdminToken::load(config.admin.token_file.as_deref())
                .map_err(StartError::Admin)?,
        })
    }

    /// Handles one request and writes its audit event. Never fails: every error becomes its
    /// problem response.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Response<ResponseBody> {
        let mut trail = Trail::start(
            request.method(),
            request.uri().path(),
            request.version(),
            request.headers(),
            connection.peer,
        );
        let request_id = trail.request_id.clone();
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            trace_from_client = trail.trace.from_client,
        );
        // With spans exported, the exporter's ids are the ones the upstream and the event get.
        if invoiceguard_telemetry::exporting() {
            let trace = &trail.trace;
            let client = trace
                .parent_id
                .as_deref()
                .map(|parent| (trace.trace_id.as_str(), parent, trace.sampled));
            if let Some(ids) = invoiceguard_telemetry::continue_trace(&span, client) {
                trail.trace.adopt(ids);
            }
        }
        let policy = self.policies.current();
        let (_in_flight, before) = InFlight::enter(&self.in_flight);
        let decided = match &policy {
            _ if before >= self.limits.max_in_flight => Err(GatewayError::Overloaded),
            Some(policy) => {
                self.phases(request, connection, policy, &mut trail)
                    .instrument(span)
                    .await
            }
            None => Err(GatewayError::PolicyUnavailable),
        };
        let (mut response, upstream_status, error) = match decided {
            Ok(response) => {
                let status = response.status().as_u16();
                (response, Some(status), None)
            }
            Err(error) => {
                if error.side() == crate::error::Side::Client {
                    tracing::debug!(%request_id, %error, "request refused");
                } else {
                    if let Some(held_back) = throttle("request failed") {
                        tracing::warn!(%request_id, %error, held_back, "request failed");
                    }
                }
                (
                    error.to_response(&request_id, &self.authn.config().mfa_acr),
                    None,
                    Some(error),
                )
            }
        };
        let response_bytes = hyper::body::Body::size_hint(response.body()).exact();
        let event = trail.finish(
            response.status().as_u16(),
            upstream_status,
            response_bytes,
            error.as_ref(),
            policy.as_ref().map_or("none", |p| p.version()),
        );
        observe(&event, error.as_ref());
        let forwarded = upstream_status.is_some()
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
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        response
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

    /// The brute-force counter of a request's source address.
    fn address_key(&self, connection: &Connection) -> (String, u64) {
        (
            format!("authfail:ip:{}", connection.peer.ip()),
            self.limits.failed_auth_per_ip,
        )
    }

    /// The brute-force counter of a subject.
    fn subject_key(&self, subject: &str) -> (String, u64) {
        (
            format!("authfail:sub:{subject}"),
            self.limits.failed_auth_per_subject,
        )
    }

    /// 421 unless the request names one of `listen.hosts` (any host when none is listed).
    fn check_host<B>(&self, request: &Request<B>) -> Result<(), GatewayError> {
        if self.hosts.is_empty() {
            return Ok(());
        }
        let named = request
            .uri()
            .authority()
            .map(|authority| authority.host().to_owned())
            .or_else(|| {
                let value = request.headers().get(header::HOST)?.to_str().ok()?;
                let authority = value.parse::<http::uri::Authority>().ok()?;
                Some(authority.host().to_owned())
            })
            .unwrap_or_default();
        let host = bare_host(&named);
        if self.hosts.iter().any(|own| own.eq_ignore_ascii_case(host)) {
            Ok(())
        } else {
            let shown: String = named.chars().take(255).collect();
            Err(GatewayError::MisdirectedRequest(shown))
        }
    }

    /// The request's credentials, each header at most once: a second `Authorization` or API key
    /// would be one the gateway did not verify, and could reach the upstream (400).
    fn credentials<'r>(
        &self,
        headers: &'r http::HeaderMap,
        connection: &'r Connection,
    ) -> Result<Credentials<'r>, GatewayError> {
        let once = |name: &http::HeaderName| {
            let mut values = headers.get_all(name).iter();
            let first = values.next();
            match values.next() {
                Some(_) => Err(GatewayError::BadRequest(format!(
                    "more than one `{name}` header"
                ))),
                None => Ok(first),
            }
        };
        Ok(Credentials {
            authorization: once(&header::AUTHORIZATION)?,
            api_key: once(&self.api_key_header)?,
            client_certificate: connection.client_certificate.as_ref(),
        })
    }

    /// 429 when a counter is past its limit. An unreachable store does not block anyone here.
    async fn check_failures(&self, keys: &[(String, u64)]) -> Result<(), GatewayError> {
        let window = Duration::from_secs(self.limits.failed_auth_window_s);
        for (key, limit) in keys {
            match self.state.limit(key, *limit, window, false).await {
                Ok(Some(wait)) => return Err(GatewayError::TooManyRequests(wait)),
                Ok(None) => {}
                Err(error) => {
                    if let Some(held_back) = throttle("brute-force counters unavailable") {
                        tracing::warn!(%error, held_back, "brute-force counters unavailable");
                    }
                }
            }
        }
        Ok(())
    }

    async fn count_failure(&self, keys: &[(String, u64)]) {
        let window = Duration::from_secs(self.limits.failed_auth_window_s);
        for (key, limit) in keys {
            if let Err(error) = self.state.limit(key, *limit, window, true).await
                && let Some(held_back) = throttle("failed authentication not counted")
            {
                tracing::warn!(%error, held_back, "failed authentication not counted");
            }
        }
    }

    async fn phases(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
        policy: &PolicyEngine,
        trail: &mut Trail,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        // normalize
        let path = normalize::request(
            request.method(),
            request.uri(),
            request.version(),
            request.headers(),
        )
        .map_err(GatewayError::BadRequest)?;
        trail.normalized(&path.path);
        self.check_host(&request)?;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.limits.max_body_bytes) {
            return Err(GatewayError::PayloadTooLarge(self.limits.max_body_bytes));
        }
        let break_glass = break_glass_reason(request.headers())?;
        trail.break_glass(break_glass.as_deref());

        // route
        let offered = self.credentials(request.headers(), connection)?;
        let credentials = || offered;
        let Some(route) = policy
            .routes()
            .find(request.method().as_str(), &path.segments)
        else {
            // Default deny; the caller is still recorded when valid credentials name them.
            if let Ok(principal) = self.authn.authenticate(credentials()).await {
                trail.authenticated(&principal);
            }
            return Err(GatewayError::NoRoute);
        };
        trail.routed(&route);

        // authenticate, behind brute-force protection
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A token verified before is not decoded again for the subject it claims: its verified
        // subject is the same.
        let cached = self.authn.cached(&credentials());
        let subject = match &cached {
            Some(principal) if principal.method == AuthMethod::Jwt => Some(principal.id.clone()),
            _ => request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(claimed_subject),
        };
        // Both counters are checked; only failures that prove their subject count against it
        // (below), so naming someone in a forged token locks out nobody but its sender.
        let address_key = self.address_key(connection);
        let mut failure_keys = vec![address_key.clone()];
        failure_keys.extend(subject.as_deref().map(|subject| self.subject_key(subject)));
        self.check_failures(&failure_keys).await?;
        let authenticated = match cached {
            Some(principal) => Ok(principal),
            None => {
                self.authn
                    .authenticate(credentials())
                    .instrument(tracing::info_span!("authenticate"))
                    .await
            }
        };
        let principal = match authenticated {
            Ok(principal) => principal,
            Err(error) => {
                if error.counts_toward_lockout() {
                    let mut counted = vec![address_key];
                    counted.extend(
                        error
                            .proven_subject()
                            .map(|subject| self.subject_key(subject)),
                    );
                    self.count_failure(&counted).await;
                }
                return Err(error.into());
            }
        };
        trail.authenticated(&principal);
        self.revocations.check(&principal.id, now_unix)?;

        // per-principal rate limit of the route (a slow drip of bulk reads is an export too)
        if let Some(limit) = route.route.rate_limit {
            let key = format!(
                "rate:{}:{}:{}",
                route.route.method, route.route.template, principal.id
            );
            match self
                .state
                .limit(
                    &key,
                    limit.requests,
                    Duration::from_secs(limit.window_s),
                    true,
                )
                .await
            {
                Ok(None) => {}
                Ok(Some(wait)) => return Err(GatewayError::TooManyRequests(wait)),
                Err(error) => return Err(GatewayError::FactUnavailable(error.to_string())),
            }
        }

        // enrich: resource facts, and the export quota reserved before the decision. A resource
        // the upstream does not know is decided without facts: only a caller the policies allow
        // learns that it does not exist (no existence oracle for the others).
        let (resource, missing) = match enrich::resource_facts(
            &route,
            policy.routes(),
            &self.state,
            &self.upstream,
            &trail.request_id,
        )
        .await
        {
            Ok(resource) => (resource, false),
            Err(GatewayError::NotFound) => (invoiceguard_policy::ResourceFacts::default(), true),
            Err(error) => return Err(error),
        };
        let (parts, body) = request.into_parts();
        let form = FormScan::for_request(&parts.headers);
        let body = GuardedBody::new(body, self.limits.max_body_bytes, self.body_times, form);
        let (body, export, reservation) = match &route.route.export {
            None => (body.boxed(), ExportFacts::default(), None),
            Some(spec) => {
                let bytes = Limited::new(body, MAX_EXPORT_REQUEST_BYTES)
                    .collect()
                    .await
                    .map_err(|error| match BodyError::find(&*error) {
                        Some(BodyError::Timeout(ms)) => GatewayError::BodyTimeout(*ms),
                        Some(BodyError::Deadline(ms)) => GatewayError::BodyTooSlow(*ms),
                        Some(error @ BodyError::MethodOverride(_)) => {
                            GatewayError::BadRequest(error.to_string())
                        }
                        _ => GatewayError::BadRequest(format!("export request body: {error}")),
                    })?
                    .to_bytes();
                let requested = enrich::requested_rows(spec, &bytes);
                let limits = policy.limits(&principal);
                let (facts, reservation) =
                    enrich::reserve_export(&self.state, &principal, limits, requested).await?;
                let held = reservation.map(|r| HeldExport::new(r, self.state.clone()));
                (
                    Full::new(bytes).map_err(|never| match never {}).boxed(),
                    facts,
                    held,
                )
            }
        };

        // authorize
        let facts = RequestFacts {
            source_ip: connection.peer.ip(),
            now_unix,
            resource,
            export,
            break_glass_reason: break_glass,
            user_scopes_enforced: self.authn.config().enforce_user_scopes,
        };
        let decision = {
            let _span = tracing::info_span!("authorize", action = %route.route.action).entered();
            let started = std::time::Instant::now();
            let decision = policy.authorize(&principal, &route, &facts);
            invoiceguard_telemetry::metrics()
                .policy_evaluation
                .observe(started.elapsed().as_secs_f64());
            decision
        };
        let shadow = self.policies.shadow().map(|shadow| {
            let method = route.route.method.as_str();
            let decision = match shadow.routes().find(method, &path.segments) {
                Some(shadow_route) => shadow.authorize(&principal, &shadow_route, &facts),
                None => invoiceguard_policy::Decision {
                    effect: invoiceguard_policy::Effect::Deny,
                    policies: Vec::new(),
                    errors: vec!["no route".to_owned()],
                    step_up: None,
                },
            };
            (decision, shadow.version().to_owned())
        });
        let allowed = decision.is_allowed();
        let step_up = decision
            .step_up
            .filter(|_| principal.kind == PrincipalKind::User);
        trail.decided(decision);
        if let Some((shadow, version)) = &shadow {
            trail.shadowed(shadow, version);
        }
        let refusal = match (step_up, allowed) {
            (Some(step_up), _) => Some(GatewayError::StepUpRequired(step_up)),
            (None, false) => Some(GatewayError::Forbidden),
            (None, true) if missing => Some(GatewayError::NotFound),
            (None, true) => None,
        };
        if let Some(refusal) = refusal {
            release(reservation).await;
            return Err(refusal);
        }

        // audit, before forwarding: the spool must be taking events (the last write succeeded,
        // no event is waiting in memory); a request that may change something has its
        // `authorized` event written first (so a crash while it is forwarded leaves a trace),
        // a sensitive one on disk (fsync) first
        if !self.audit.is_writable() && !self.audit_fail_open {
            release(reservation).await;
            return Err(GatewayError::AuditUnavailable(
                "the audit spool is not taking events".to_owned(),
            ));
        }
        let sensitive = self.sensitive.contains(&route.route.action);
        if sensitive || changes_state(&parts.method) {
            let event = trail.authorized_event(policy.version());
            let recorded = if sensitive {
                self.audit.record_durable(event).await
            } else {
                self.audit.record_before_forward(event)
            };
            if let Err(error) = recorded {
                if self.audit_fail_open {
                    tracing::error!(%error, "request forwarded without its `authorized` audit event (fail_open)");
                } else {
                    release(reservation).await;
                    return Err(GatewayError::AuditUnavailable(error.to_string()));
                }
            }
        }

        // forward
        let context = ForwardContext {
            principal: &principal,
            request_id: &trail.request_id,
            trace: &trail.trace,
            client_ip: connection.peer.ip(),
            tls: connection.tls,
        };
        let sent = self
            .upstream
            .send(Request::from_parts(parts, body), &path.path, &context)
            .instrument(tracing::info_span!("forward"))
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                release(reservation).await;
                return Err(error);
            }
        };

        // settle
        let (response, settled) = settle::settle(
            response,
            route.route,
            &principal.id,
            reservation,
            &self.state,
        )
        .await;
        trail.settled(settled.export_rows);
        Ok(response)
    }
}
