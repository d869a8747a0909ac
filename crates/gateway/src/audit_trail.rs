//! The audit phase: what each phase learned about a request, gathered into its one audit event.

use std::net::SocketAddr;
use std::time::Instant;

use http::{Method, Version, header};
use invoiceguard_audit::{
    Actor, AuditEvent, DecisionRecord, Outcome, RequestRecord, ResourceRecord, ShadowRecord,
    Source, now_rfc3339,
};
use invoiceguard_authn::{Principal, PrincipalKind};
use invoiceguard_policy::{Decision, RouteMatch};

use crate::error::GatewayError;

/// Raw paths of refused requests are cut to this length in the event.
const MAX_RECORDED_PATH: usize = 1024;

/// The facts of one request, filled in phase by phase.
#[derive(Clone)]
pub(crate) struct Trail {
    pub(crate) request_id: String,
    /// The request's place in a trace (the client's, or one the gateway started).
    pub(crate) trace: crate::trace::TraceContext,
    started: Instant,
    time: String,
    source: Source,
    method: String,
    path: String,
    protocol: String,
    route: Option<String>,
    action: Option<String>,
    resource: Option<ResourceRecord>,
    actor: Option<Actor>,
    decision: Option<Decision>,
    shadow: Option<ShadowRecord>,
    export_rows: Option<u64>,
    break_glass: Option<String>,
}

impl Trail {
    /// Starts the trail when the request arrives.
    pub(crate) fn start(
        method: &Method,
        raw_path: &str,
        version: Version,
        headers: &http::HeaderMap,
        peer: SocketAddr,
    ) -> Self {
        let mut path = raw_path.to_owned();
        if path.len() > MAX_RECORDED_PATH {
            let mut end = MAX_RECORDED_PATH;
            while !path.is_char_boundary(end) {
                end -= 1;
            }
            path.truncate(end);
        }
        Self {
            request_id: crate::trace::random_uuid(),
            trace: crate::trace::TraceContext::from_headers(headers),
            started: Instant::now(),
            time: now_rfc3339(),
            source: Source {
                ip: peer.ip().to_string(),
                user_agent: headers.get(header::USER_AGENT).map(|ua| {
                    String::from_utf8_lossy(ua.as_bytes())
                        .chars()
                        .take(256)
                        .collect()
                }),
            },
            method: method.to_string(),
            path,
            protocol: format!("{version:?}"),
            route: None,
            action: None,
            resource: None,
            actor: None,
            decision: None,
            shadow: None,
            export_rows: None,
            break_glass: None,
        }
    }

    /// The normalize phase's canonical path replaces the raw one.
    pub(crate) fn normalized(&mut self, path: &str) {
        path.clone_into(&mut self.path);
    }

    /// The route phase's match.
    pub(crate) fn routed(&mut self, matched: &RouteMatch<'_>) {
        self.route = Some(matched.route.template.clone());
        self.action = Some(matched.route.action.clone());
        self.resource = Some(ResourceRecord {
            kind: matched.route.resource_type.clone(),
            id: matched.resource_id.clone(),
        });
    }

    /// The authenticate phase's principal.
    pub(crate) fn authenticated(&mut self, principal: &Principal) {
        self.actor = Some(Actor {
            kind: match principal.kind {
                PrincipalKind::User => "user",
                PrincipalKind::ServiceAccount => "service_account",
            },
            id: principal.id.clone(),
            roles: principal.roles.clone(),
            scopes: principal.scopes.clone(),
            client_id: principal.client_id.clone(),
            auth_method: principal.method.as_str(),
            amr: principal.amr.clone(),
            acr: principal.acr.clone(),
            mfa: principal.mfa,
        });
    }

    /// The authorize phase's decision.
    pub(crate) fn decided(&mut self, decision: Decision) {
        self.decision = Some(decision);
    }

    /// Shadow mode: the candidate set's decision, kept only when it differs from the enforced one.
    pub(crate) fn shadowed(&mut self, shadow: &Decision, version: &str) {
        let differs = self.decision.as_ref().is_none_or(|enforced| {
            enforced.effect != shadow.effect || enforced.policies != shadow.policies
        });
        if differs {
            self.shadow = Some(ShadowRecord {
                effect: if shadow.is_allowed() { "allow" } else { "deny" },
                policies: shadow.policies.clone(),
                policy_version: version.to_owned(),
            });
        }
    }

    /// A break-glass reason stated by the request: the event is flagged critical.
    pub(crate) fn break_glass(&mut self, reason: Option<&str>) {
        self.break_glass = reason.map(str::to_owned);
    }

    /// The settle phase's count of exported rows.
    pub(crate) fn settled(&mut self, export_rows: Option<u64>) {
        self.export_rows = export_rows;
    }

    /// The event of a request about to be forwarded (`stage: "authorized"`, status 0): a
    /// request that may change something (any method but `GET`, `HEAD`, `OPTIONS`) has it
    /// written before it leaves the gateway, a sensitive one made durable.
    pub(crate) fn authorized_event(&self, policy_version: &str) -> AuditEvent {
        let mut event = self.clone().finish(0, None, None, None, policy_version);
        event.stage = "authorized";
        event
    }

    /// The finished event: the status sent, the answer's size when known, and the error if the
    /// request was refused or failed.
    pub(crate) fn finish(
        self,
        status: u16,
        upstream_status: Option<u16>,
        response_bytes: Option<u64>,
        error: Option<&GatewayError>,
        policy_version: &str,
    ) -> AuditEvent {
        let allowed = self.decision.as_ref().is_some_and(Decision::is_allowed);
        let (policies, mut detail) = match self.decision {
            Some(decision) => {
                let detail = (!decision.errors.is_empty()).then(|| decision.errors.join("; "));
                (decision.policies, detail)
            }
            None => (Vec::new(), None),
        };
        let reason = match error {
            Some(error) if !allowed => error.reason(),
            _ => "policy",
        };
        if let Some(error) = error {
            detail = error.audit_detail().or(detail);
        }
        let error_side = error.map(|e| e.side().as_str());
        let action = self.action.as_deref().unwrap_or_default();
        let category = match error {
            _ if self.break_glass.is_some() => "break-glass",
            Some(GatewayError::Unauthenticated(_)) => "authentication",
            _ if action.starts_with("export:") => "export",
            _ if action.starts_with("settings:") || action.starts_with("user:") => "administration",
            _ if self
                .actor
                .as_ref()
                .is_some_and(|a| a.kind == "service_account") =>
            {
                "integration"
            }
            _ => "authorization",
        };
        let severity = match error {
            _ if self.break_glass.is_some() => "critical",
            Some(e) if e.side() != crate::error::Side::Client => "error",
            _ if matches!(category, "authentication" | "administration") => "high",
            None => "info",
            Some(_) => "warning",
        };
        AuditEvent {
            event_id: crate::trace::random_uuid(),
            seq: 0,
            stage: "complete",
            time: self.time,
            instance: String::new(),
            request_id: self.request_id,
            trace_id: Some(self.trace.trace_id),
            actor: self.actor,
            source: self.source,
            request: RequestRecord {
                method: self.method,
                path: self.path,
                route: self.route,
                protocol: self.protocol,
            },
            action: self.action,
            resource: self.resource,
            break_glass_reason: self.break_glass,
            decision: DecisionRecord {
                effect: if allowed { "allow" } else { "deny" },
                reason,
                policies,
                policy_version: policy_version.to_owned(),
                detail,
                shadow: self.shadow,
            },
            outcome: Outcome {
                status,
                upstream_status,
                duration_ms: (self.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round()
                    / 1000.0,
                response_bytes,
                error_side,
                export_rows: self.export_rows,
            },
            severity,
            category,
            prev_hash: String::new(),
        }
    }
}

/// A request to the admin listener's revocation endpoints, as audited: every one, allowed or
/// refused, gets its event.
pub(crate) struct AdminAct<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) peer: SocketAddr,
    /// `revocation:create`, `revocation:lift`, `revocation:list`, or `revocation:other` for a
    /// method the endpoints do not take.
    pub(crate) action: &'static str,
    /// The subject revoked or lifted.
    pub(crate) subject: Option<String>,
    /// Whether the admin token was right (the actor is then the admin).
    pub(crate) authenticated: bool,
    /// The status the caller got.
    pub(crate) status: u16,
    /// The duration and reason of a revocation, or why the request was refused.
    pub(crate) detail: Option<String>,
}

/// The audit event of a request to the revocation endpoints: who (the admin token, or nobody
/// when it was missing or wrong), from where, on which subject, and what came of it. Refusals
/// and changes are `high`; an allowed listing is `info`.
pub(crate) fn admin_event(act: AdminAct<'_>, policy_version: &str) -> AuditEvent {
    let allowed = act.authenticated && act.status < 400;
    let reason = match act.status {
        _ if !act.authenticated => "unauthenticated",
        503 => "unavailable",
        400..=499 => "bad_request",
        _ => "admin",
    };
    let severity = if allowed && act.action == "revocation:list" {
        "info"
    } else {
        "high"
    };
    AuditEvent {
        event_id: crate::trace::random_uuid(),
        seq: 0,
        stage: "complete",
        time: now_rfc3339(),
        instance: String::new(),
        request_id: crate::trace::random_uuid(),
        trace_id: None,
        actor: act.authenticated.then(|| Actor {
            kind: "admin",
            id: "admin-token".to_owned(),
            roles: Vec::new(),
            scopes: Vec::new(),
            client_id: None,
            auth_method: "admin_token",
            amr: Vec::new(),
            acr: None,
            mfa: false,
        }),
        source: Source {
            ip: act.peer.ip().to_string(),
            user_agent: None,
        },
        request: RequestRecord {
            method: act.method.to_owned(),
            path: act.path.chars().take(MAX_RECORDED_PATH).collect(),
            route: Some(
                if act.path.starts_with("/revocations/") {
                    "/revocations/{subject}"
                } else {
                    "/revocations"
                }
                .to_owned(),
            ),
            protocol: "HTTP/1.1".to_owned(),
        },
        action: Some(act.action.to_owned()),
        resource: Some(ResourceRecord {
            kind: "Subject".to_owned(),
            id: act.subject.unwrap_or_else(|| "*".to_owned()),
        }),
        break_glass_reason: None,
        decision: DecisionRecord {
            effect: if allowed { "allow" } else { "deny" },
            reason,
            policies: Vec::new(),
            policy_version: policy_version.to_owned(),
            detail: act.detail,
            shadow: None,
        },
        outcome: Outcome {
            status: act.status,
            upstream_status: None,
            duration_ms: 0.0,
            response_bytes: None,
            error_side: match act.status {
                503 => Some("internal"),
                400..=499 => Some("client"),
                _ => None,
            },
            export_rows: None,
        },
        severity,
        category: "revocation",
        prev_hash: String::new(),
    }
}

/// The audit event of a request the HTTP layer refused before the gateway could read it (a
/// malformed or oversized request head, ambiguous framing): its source, the status the client
/// got, and the parser's reason. Method and path are unknown (empty).
pub(crate) fn malformed_event(
    peer: SocketAddr,
    status: u16,
    detail: &str,
    policy_version: &str,
) -> AuditEvent {
    AuditEvent {
        event_id: crate::trace::random_uuid(),
        seq: 0,
        stage: "complete",
        time: now_rfc3339(),
        instance: String::new(),
        request_id: crate::trace::random_uuid(),
        trace_id: None,
        actor: None,
        source: Source {
            ip: peer.ip().to_string(),
            user_agent: None,
        },
        request: RequestRecord {
            method: String::new(),
            path: String::new(),
            route: None,
            protocol: "HTTP/1.1".to_owned(),
        },
        action: None,
        resource: None,
        break_glass_reason: None,
        decision: DecisionRecord {
            effect: "deny",
            reason: "malformed",
            policies: Vec::new(),
            policy_version: policy_version.to_owned(),
            detail: Some(detail.to_owned()),
            shadow: None,
        },
        outcome: Outcome {
            status,
            upstream_status: None,
            duration_ms: 0.0,
            response_bytes: None,
            error_side: Some("client"),
            export_rows: None,
        },
        severity: "warning",
        category: "authorization",
        prev_hash: String::new(),
    }
}
