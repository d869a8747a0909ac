//! The audit event: one per request.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

/// The current time, RFC 3339 in UTC with sub-second precision.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// One request, as the SIEM sees it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// Unique id of this event.
    pub event_id: String,
    /// Position in the audit file: 1, 2, 3… with no gaps; set when the event is written.
    pub seq: u64,
    /// `complete` (the request's outcome is known), or `authorized` (a sensitive request is about
    /// to be forwarded: this event is on disk before it is; its `complete` event follows).
    pub stage: &'static str,
    /// When the request was received (RFC 3339, UTC).
    pub time: String,
    /// The gateway instance that wrote the event (`[audit] instance`, by default the host name);
    /// set when the event is written.
    pub instance: String,
    /// The request id, also sent to the client and the upstream as `x-request-id`.
    pub request_id: String,
    /// The W3C trace id of the request, from the client's `traceparent` header, if any.
    pub trace_id: Option<String>,
    /// Who called; absent when the caller could not be authenticated.
    pub actor: Option<Actor>,
    /// Where the call came from.
    pub source: Source,
    /// What was asked.
    pub request: RequestRecord,
    /// The Cedar action, when a route matched.
    pub action: Option<String>,
    /// The Cedar resource, when a route matched.
    pub resource: Option<ResourceRecord>,
    /// The break-glass reason the request stated, if any (the event is then `critical`).
    pub break_glass_reason: Option<String>,
    /// What was decided and why.
    pub decision: DecisionRecord,
    /// How the request ended.
    pub outcome: Outcome,
    /// `info` (allowed and answered), `warning` (denied or refused), `high` (an authentication
    /// failure, an administration action, an admin operation), `error` (the gateway or the
    /// upstream failed), `critical` (a break-glass request, whatever its outcome).
    pub severity: &'static str,
    /// What the event is about, for the SIEM's first filter: `authentication` (credentials
    /// refused), `break-glass`, `revocation` (an admin operation), `export`, `administration`
    /// (settings, users and roles), `integration` (a service account's call) or `authorization`
    /// (every other decision), `lifecycle` (joiners, movers, leavers: a security event from the
    /// IdP, a role grant, a role change seen).
    pub category: &'static str,
    /// For a `lifecycle` event: whom it is about and what the gateway did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleRecord>,
    /// The hash of the previous event's line (SHA-256, or HMAC-SHA256 with `[audit]
    /// hmac_key_file`), 64 zeros for the first: the chain `invoiceguard audit verify` checks. Set
    /// when the event is written.
    pub prev_hash: String,
}

/// A time-limited grant whose role counted for a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GrantUse {
    /// The grant's id.
    pub id: String,
    /// The role it grants.
    pub role: String,
    /// Until when (Unix seconds).
    pub until_unix: u64,
    /// The ticket it was granted under.
    pub ticket: String,
}

/// What a `lifecycle` event is about: a security event from the IdP (Shared Signals), a role
/// grant given, lifted or expired, or a change of a subject's roles seen in their token.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LifecycleRecord {
    /// The subject (a user's `sub`), or what the event named when it names nobody the gateway
    /// knows.
    pub subject: String,
    /// `ssf` (a security event), `grant` or `roles_changed`.
    pub source: &'static str,
    /// A security event's type URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// A security event's `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// A security event's transmitter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transmitter: Option<String>,
    /// The subject's roles before (a role change, a grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_before: Option<Vec<String>>,
    /// The subject's roles after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_after: Option<Vec<String>>,
    /// A grant's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// A grant's role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A grant's end (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_unix: Option<u64>,
    /// The ticket a grant was asked under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The reason a grant states, or a security event's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the gateway did, in order (`revoked`, `sessions_ended:2`, `logins_before:…`,
    /// `step_up_required`, `lifted`, `granted`, `expired`, `nothing`).
    pub acted: Vec<String>,
}

/// The authenticated caller.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    /// `user` or `service_account`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The token's subject.
    pub id: String,
    /// Roles (users) from the IdP.
    pub roles: Vec<String>,
    /// Scopes of the token.
    pub scopes: Vec<String>,
    /// The OAuth client the token was issued to.
    pub client_id: Option<String>,
    /// How the caller authenticated to the gateway: `bearer_jwt`, `bearer_introspected`,
    /// `api_key` or `client_certificate`.
    pub auth_method: &'static str,
    /// The IdP's authentication methods (`amr`).
    pub amr: Vec<String>,
    /// The IdP's authentication context class (`acr`).
    pub acr: Option<String>,
    /// Whether the login was multi-factor.
    pub mfa: bool,
    /// The time-limited grants whose roles counted for this request (with their tickets).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantUse>,
}

/// Where a request came from.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The client's address.
    pub ip: String,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// The browser session the request came with: the SHA-256 of its id (never the id), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// The HTTP request as the gateway authorized it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// The HTTP method.
    pub method: String,
    /// The normalized path (the one authorized and forwarded), without the query.
    pub path: String,
    /// The matched route template, e.g. `/invoices/{id}/approve`.
    pub route: Option<String>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: String,
}

/// A Cedar resource.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceRecord {
    /// Entity type, e.g. `Invoice`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Entity id, e.g. `INV-1`; `*` for a collection.
    pub id: String,
}

/// The access decision.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// `allow` or `deny`.
    pub effect: &'static str,
    /// Why: `policy` (Cedar decided), `step_up` (Cedar decided; a stronger or fresher login
    /// would change it), `no_route`, `unauthenticated`, `bad_request`, `unavailable`.
    pub reason: &'static str,
    /// The `@id`s of the deciding policies.
    pub policies: Vec<String>,
    /// The policy-set version that decided.
    pub policy_version: String,
    /// More detail for a refusal, e.g. the authentication failure (`expired`, `bad_signature`).
    pub detail: Option<String>,
    /// Shadow mode: what the candidate policy set would have decided, only where it differs.
    pub shadow: Option<ShadowRecord>,
    /// What Cedar decided on, when it decided (a route's request): enough to decide the same
    /// request again with another policy set (`invoiceguard policy replay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<DecisionInputs>,
}

/// The version of [`DecisionInputs`] this build writes; a replay reports events of another
/// version (or without inputs) as not replayable rather than guess.
pub const DECISION_INPUTS_VERSION: u32 = 1;

/// The inputs of one Cedar decision, as recorded in its event (redacted as the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DecisionInputs {
    /// [`DECISION_INPUTS_VERSION`].
    pub version: u32,
    /// The time the decision was made at (Unix seconds): the login's age and the hour follow.
    pub now_unix: u64,
    /// `user` or `service_account`.
    pub principal_type: String,
    /// The principal's id.
    pub principal: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Whether the login was multi-factor.
    pub mfa: bool,
    /// The login's context class.
    pub acr: Option<String>,
    /// When the person logged in (Unix seconds).
    pub auth_time: Option<u64>,
    /// The client's address.
    pub source_ip: String,
    /// The resource's facts: creator, amount, currency, status, company.
    pub creator: Option<String>,
    /// The resource's amount.
    pub amount: Option<i64>,
    /// The resource's currency.
    pub currency: Option<String>,
    /// The resource's status.
    pub status: Option<String>,
    /// The resource's company.
    pub company: Option<String>,
    /// Rows an export asked for.
    pub export_rows_requested: u64,
    /// Whether the export quota held them.
    pub export_within_limits: bool,
    /// Whether another person's approval was used.
    pub export_approved: bool,
    /// A stated break-glass reason.
    pub break_glass_reason: Option<String>,
    /// Whether a user's token was held to its scopes.
    pub scopes_enforced: bool,
}

/// A shadow policy set's different decision.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowRecord {
    /// `allow` or `deny`.
    pub effect: &'static str,
    /// Its deciding policies.
    pub policies: Vec<String>,
    /// The candidate set's version.
    pub policy_version: String,
}

/// How the request ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The status sent to the client.
    pub status: u16,
    /// The upstream's status, when the request was forwarded and answered.
    pub upstream_status: Option<u16>,
    /// Time from receiving the request to the response head, in milliseconds.
    pub duration_ms: f64,
    /// The size of the answer's body when its length was known at the response head
    /// (`Content-Length`); absent for streamed answers.
    pub response_bytes: Option<u64>,
    /// Which side failed, for errors: `client`, `upstream` or `internal`.
    pub error_side: Option<&'static str>,
    /// For an export: the rows the answer held (what the quota was charged).
    pub export_rows: Option<u64>,
    /// For a watermarked export, in its `delivered` event: what was delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_delivery: Option<ExportDelivery>,
}

/// What a watermarked export delivered, measured as its bytes streamed to the client.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExportDelivery {
    /// The export's id (the `x-invoiceguard-export-id` header, and its watermark).
    pub id: String,
    /// How it was marked: `csv` (a trailing line), `json` (a first member) or `none` (traced by
    /// its hash only).
    pub watermark: &'static str,
    /// SHA-256 of the exact bytes delivered, hex.
    pub sha256: String,
    /// SHA-256 of the upstream's bytes (the delivered ones without the watermark), hex.
    pub sha256_unmarked: String,
    /// Bytes delivered.
    pub bytes: u64,
    /// Whether the client received the whole answer (false: it went away, or the upstream broke
    /// off, mid-stream).
    pub complete: bool,
}

impl AuditEvent {
    /// An event of the gateway itself rather than of a request (`category: "audit"`, decision
    /// reason `system`): e.g. `audit:spool_repaired` when a torn spool tail was cut at start.
    pub fn system(action: &str, severity: &'static str, detail: String) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        Self {
            event_id: id.clone(),
            seq: 0,
            stage: "complete",
            time: now_rfc3339(),
            instance: String::new(),
            request_id: id,
            trace_id: None,
            actor: None,
            source: Source {
                ip: String::new(),
                user_agent: None,
                session: None,
            },
            request: RequestRecord {
                method: String::new(),
                path: String::new(),
                route: None,
                protocol: String::new(),
            },
            action: Some(action.to_owned()),
            resource: None,
            break_glass_reason: None,
            decision: DecisionRecord {
                effect: "allow",
                reason: "system",
                policies: Vec::new(),
                policy_version: String::new(),
                detail: Some(detail),
                shadow: None,
                inputs: None,
            },
            outcome: Outcome {
                status: 0,
                upstream_status: None,
                duration_ms: 0.0,
                response_bytes: None,
                error_side: None,
                export_rows: None,
                export_delivery: None,
            },
            severity,
            category: "audit",
            lifecycle: None,
            prev_hash: String::new(),
        }
    }
}
