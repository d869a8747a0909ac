//! The request context: everything the gateway knows about one request. It is created when the
//! request arrives (its id, its place in a trace, the connection it came on) and filled in phase
//! by phase (the canonical path, the route, the principal, the facts, the decision, the export's
//! reservation). The audit event is written from it (`audit_trail.rs`), whatever phase ended the
//! request.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{Method, Version, header};
use invoiceguard_audit::{ShadowRecord, now_rfc3339};
use invoiceguard_authn::Principal;
use invoiceguard_policy::{Decision, ExportFacts, PolicyEngine, ResourceFacts, RouteMatch};
use rustls::pki_types::CertificateDer;

use crate::canonical_path::CanonicalPath;
use crate::error::GatewayError;
use crate::reservation::HeldExport;
use crate::trace::TraceContext;

/// Raw paths of refused requests are cut to this length in the event.
pub(crate) const MAX_RECORDED_PATH: usize = 1024;

/// What the accept phase knows about a connection.
pub struct Connection {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client's certificate, verified against the listener's client CA.
    pub client_certificate: Option<CertificateDer<'static>>,
}

/// One request's facts, as the phases learn them. `'r` is the request's life: the connection
/// and the policy set in force when it arrived outlive it.
pub(crate) struct RequestContext<'r> {
    /// The id on the answer, the upstream request and the audit event.
    pub(crate) request_id: String,
    /// The request's place in a trace (the client's, or one the gateway started).
    pub(crate) trace: TraceContext,
    pub(crate) connection: &'r Connection,
    /// The policy set that decides this request (a reload meanwhile does not change it); none
    /// while no set has loaded (every request is then refused).
    pub(crate) policy: Option<&'r PolicyEngine>,
    pub(crate) started: Instant,
    /// The arrival time, RFC 3339.
    pub(crate) time: String,
    /// The arrival time, Unix seconds (revocations and policies read it).
    pub(crate) now_unix: u64,
    pub(crate) method: Method,
    pub(crate) version: Version,
    /// The path as recorded: the raw one (cut to 1,024 bytes) until it is normalized.
    pub(crate) recorded_path: String,
    pub(crate) user_agent: Option<String>,

    /// normalize: the canonical path the route is found by and the upstream receives.
    pub(crate) path: Option<CanonicalPath>,
    /// normalize: the reason a break-glass account gives.
    pub(crate) break_glass: Option<String>,
    /// route: the matched route and resource id.
    pub(crate) route: Option<RouteMatch<'r>>,
    /// authenticate: who is asking.
    pub(crate) principal: Option<Arc<Principal>>,
    /// enrich: what is known about the resource.
    pub(crate) resource: ResourceFacts,
    /// enrich: the upstream says the resource does not exist (told only to a caller allowed).
    pub(crate) resource_missing: bool,
    /// enrich: what an export asks and whether the quota holds it.
    pub(crate) export: ExportFacts,
    /// enrich: an export's rows, held until settled or given back.
    pub(crate) reservation: Option<HeldExport>,
    /// authorize: the enforced decision.
    pub(crate) decision: Option<Decision>,
    /// authorize: whether a user's token was held to its scopes (`authn.enforce_user_scopes`).
    pub(crate) scopes_enforced: bool,
    /// authorize: a shadow policy set's decision, when it differs.
    pub(crate) shadow: Option<ShadowRecord>,
    /// settle: the rows an export returned.
    pub(crate) export_rows: Option<u64>,
    /// enrich: what defines an export (its method, path, query and body), for four eyes.
    pub(crate) export_definition: Option<crate::approvals::ExportDefinition>,
    /// normalize: the reason an export's requester gives (`X-Export-Reason`).
    pub(crate) export_reason: Option<String>,
    /// enrich: another person's approval of this export, spent when the policies allow it.
    pub(crate) approval: Option<crate::approvals::ApprovalUse>,
    /// Whether a browser navigates here (`Sec-Fetch-Mode: navigate`, or an HTML `Accept` from a
    /// client without Fetch Metadata) with `GET` or `HEAD`: sent to log in rather than refused.
    pub(crate) navigation: bool,
    /// The path and query a browser is returned to after a login.
    pub(crate) return_to: String,
    /// authenticate: the browser session the request came with.
    pub(crate) session: Option<SessionSeen>,
    /// A gateway-owned endpoint (`/.invoiceguard/…`) answered the request.
    pub(crate) own: Option<OwnAct>,
    /// The time-limited grants whose roles counted for this request.
    pub(crate) grants: Vec<invoiceguard_audit::GrantUse>,
    /// What a lifecycle act (a pushed security event) did.
    pub(crate) lifecycle: Option<invoiceguard_audit::LifecycleRecord>,
}

/// The session a request was authenticated by, as the audit event records it.
pub(crate) struct SessionSeen {
    /// The SHA-256 of the session id (never the id).
    pub(crate) hash: String,
    /// The device the session started on, when the request came from another.
    pub(crate) device_changed_from: Option<invoiceguard_session::Device>,
}

/// What a gateway-owned endpoint did, for the audit event.
pub(crate) struct OwnAct {
    /// The act, e.g. `session:login`.
    pub(crate) action: &'static str,
    /// What came of it (sessions ended, where the browser was sent).
    pub(crate) detail: Option<String>,
    /// What it acted on (an export request), when anything.
    pub(crate) resource: Option<(&'static str, String)>,
}

impl<'r> RequestContext<'r> {
    /// The context of a request that just arrived.
    pub(crate) fn new(
        head: &http::request::Parts,
        connection: &'r Connection,
        policy: Option<&'r PolicyEngine>,
    ) -> Self {
        let raw_path = head.uri.path();
        let mut end = raw_path.len().min(MAX_RECORDED_PATH);
        while !raw_path.is_char_boundary(end) {
            end -= 1;
        }
        let navigation = is_navigation(head);
        Self {
            request_id: crate::trace::random_uuid(),
            trace: TraceContext::from_headers(&head.headers),
            connection,
            policy,
            started: Instant::now(),
            time: now_rfc3339(),
            now_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            method: head.method.clone(),
            version: head.version,
            recorded_path: raw_path[..end].to_owned(),
            user_agent: head.headers.get(header::USER_AGENT).map(|ua| {
                String::from_utf8_lossy(ua.as_bytes())
                    .chars()
                    .take(256)
                    .collect()
            }),
            path: None,
            break_glass: None,
            route: None,
            principal: None,
            resource: ResourceFacts::default(),
            resource_missing: false,
            export: ExportFacts::default(),
            reservation: None,
            decision: None,
            scopes_enforced: false,
            shadow: None,
            export_rows: None,
            export_definition: None,
            export_reason: None,
            approval: None,
            navigation,
            // Only a navigation is ever sent to log in and back: no copy for other requests.
            return_to: match head.uri.path_and_query() {
                Some(target) if navigation => target.as_str().to_owned(),
                _ => String::new(),
            },
            session: None,
            own: None,
            grants: Vec::new(),
            lifecycle: None,
        }
    }

    /// The policy set in force.
    pub(crate) fn policy(&self) -> Result<&'r PolicyEngine, GatewayError> {
        self.policy.ok_or(GatewayError::PolicyUnavailable)
    }

    /// The route found by the route phase (the phases after it run only when there is one).
    pub(crate) fn route(&self) -> Result<&RouteMatch<'r>, GatewayError> {
        self.route.as_ref().ok_or_else(|| out_of_order("route"))
    }

    /// The principal found by the authenticate phase.
    pub(crate) fn principal(&self) -> Result<&Arc<Principal>, GatewayError> {
        self.principal
            .as_ref()
            .ok_or_else(|| out_of_order("principal"))
    }

    /// The canonical path found by the normalize phase.
    pub(crate) fn path(&self) -> Result<&CanonicalPath, GatewayError> {
        self.path.as_ref().ok_or_else(|| out_of_order("path"))
    }
}

/// Whether a browser navigates to the URL (rather than a script or an API client calling it).
fn is_navigation(head: &http::request::Parts) -> bool {
    if !matches!(head.method, Method::GET | Method::HEAD) {
        return false;
    }
    match head.headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes() == b"navigate",
        None => head
            .headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html")),
    }
}

/// A phase ran before the one that fills what it reads: a bug, answered 500.
fn out_of_order(missing: &str) -> GatewayError {
    GatewayError::Internal(format!(
        "the request's {missing} was read before it was known"
    ))
}

/// Whether a request may change something upstream: every method but `GET`, `HEAD` and
/// `OPTIONS` (which HTTP defines as safe).
pub(crate) fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
