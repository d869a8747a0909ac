//! The audit events the gateway writes: a request's, from what its phases put in its context
//! (an `authorized` one before forwarding, the `complete` one at its end); an admin request's; and
//! one for a request the HTTP layer refused before the phases could read it.

use std::net::SocketAddr;

use invoiceguard_audit::{
    Actor, AuditEvent, DecisionRecord, Outcome, RequestRecord, ResourceRecord, ShadowRecord,
    Source, now_rfc3339,
};
use invoiceguard_authn::{Principal, PrincipalKind};
use invoiceguard_policy::Decision;

use crate::context::{MAX_RECORDED_PATH, RequestContext};
use crate::error::GatewayError;

/// The event of a request about to be forwarded (`stage: "authorized"`, status 0): a request
/// that may change something (any method but `GET`, `HEAD`, `OPTIONS`) has it written before it
/// leaves the gateway, a sensitive one made durable.
pub(crate) fn authorized_event(ctx: &RequestContext<'_>) -> AuditEvent {
    let ended = Ended {
        status: 0,
        upstream_status: None,
        response_bytes: None,
        error: None,
        policy_version: ctx.policy.map_or("none", |policy| policy.version()),
    };
    let mut event = event(ctx, ctx.decision.clone(), ctx.shadow.clone(), &ended);
    event.stage = "authorized";
    event
}

/// The event of a watermarked export, before its delivery is known: the request's, as allowed.
pub(crate) fn delivered_template(ctx: &RequestContext<'_>, status: u16) -> AuditEvent {
    let ended = Ended {
        status,
        upstream_status: Some(status),
        response_bytes: None,
        error: None,
        policy_version: ctx.policy.map_or("none", |policy| policy.version()),
    };
    let mut event = event(ctx, ctx.decision.clone(), None, &ended);
    event.stage = "delivered";
    event
}

/// The `delivered` event of a watermarked export: what the client got, measured as it streamed.
pub(crate) fn delivered_event(
    mut template: AuditEvent,
    delivery: invoiceguard_audit::ExportDelivery,
) -> AuditEvent {
    template.event_id = crate::trace::random_uuid();
    template.decision.detail = Some(format!(
        "export {} {}: {} bytes, sha256 {}, watermark {}",
        delivery.id,
        if delivery.complete {
            "delivered"
        } else {
            "cut off before its end"
        },
        delivery.bytes,
        delivery.sha256,
        delivery.watermark
    ));
    template.outcome.export_delivery = Some(delivery);
    template.severity = "high";
    template
}

/// How a request ended: the status sent, the answer's size when known, and the error if it was
/// refused or failed.
pub(crate) struct Ended<'a> {
    pub(crate) status: u16,
    pub(crate) upstream_status: Option<u16>,
    pub(crate) response_bytes: Option<u64>,
    pub(crate) error: Option<&'a GatewayError>,
    pub(crate) policy_version: &'a str,
}

/// The request's finished event (`stage: "complete"`); the context's decision is moved into it.
pub(crate) fn finished_event(ctx: &mut RequestContext<'_>, ended: &Ended<'_>) -> AuditEvent {
    let (decision, shadow) = (ctx.decision.take(), ctx.shadow.take());
    event(ctx, decision, shadow, ended)
}

/// The audit event of the request as far as its phases got.
fn event(
    ctx: &RequestContext<'_>,
    decision: Option<Decision>,
    shadow: Option<ShadowRecord>,
    ended: &Ended<'_>,
) -> AuditEvent {
    let error = ended.error;
    let inputs = decision.as_ref().and_then(|_| decision_inputs(ctx));
    // A gateway-owned endpoint that answered did what it is for (a login, a logout).
    let own_done = ctx.own.is_some() && error.is_none();
    let decided = decision.is_some();
    let allowed = own_done || decision.as_ref().is_some_and(Decision::is_allowed);
    let (policies, mut detail) = match decision {
        Some(decision) => {
            let detail = (!decision.errors.is_empty()).then(|| decision.errors.join("; "));
            (decision.policies, detail)
        }
        None => (Vec::new(), None),
    };
    let reason = match error {
        Some(error) if !allowed => error.reason(),
        // An own endpoint's act the policies decided (an approval) keeps `policy`.
        _ if own_done && !decided => match ctx.own.as_ref().map(|own| own.action) {
            Some(action) if action.starts_with("export:") => "approval",
            _ => "session",
        },
        _ => "policy",
    };
    if let Some(own) = &ctx.own {
        detail = own.detail.clone().or(detail);
    }
    if let Some(approval) = ctx.approval.as_ref().filter(|_| allowed) {
        let request = &approval.request;
        detail = Some(format!(
            "approved by {} (export request {}, {} rows)",
            request.decided_by.as_deref().unwrap_or("-"),
            request.id,
            request.rows
        ));
    }
    if let Some(error) = error {
        detail = error.audit_detail().or(detail);
    }
    let device_changed = ctx
        .session
        .as_ref()
        .and_then(|session| session.device_changed_from.as_ref());
    if let Some(from) = device_changed {
        let now =
            invoiceguard_session::Device::of(ctx.user_agent.as_deref(), ctx.connection.peer.ip());
        let change = format!("session used from another device: started on {from}, now {now}");
        detail = Some(match detail {
            Some(detail) => format!("{change}; {detail}"),
            None => change,
        });
    }
    let route = ctx.route.as_ref().map(|matched| matched.route);
    let action = match &ctx.own {
        Some(own) => own.action,
        None => route.map_or("", |route| route.action.as_str()),
    };
    let mut actor = ctx.principal.as_deref().map(actor);
    if let Some(actor) = &mut actor {
        actor.grants.clone_from(&ctx.grants);
    }
    let category = match ctx.lifecycle {
        Some(_) => "lifecycle",
        None => category(ctx, action, actor.as_ref(), error),
    };
    AuditEvent {
        event_id: crate::trace::random_uuid(),
        seq: 0,
        stage: "complete",
        time: ctx.time.clone(),
        instance: String::new(),
        request_id: ctx.request_id.clone(),
        trace_id: Some(ctx.trace.trace_id.clone()),
        actor,
        source: Source {
            ip: ctx.connection.peer.ip().to_string(),
            user_agent: ctx.user_agent.clone(),
            session: ctx.session.as_ref().map(|session| session.hash.clone()),
        },
        request: RequestRecord {
            method: ctx.method.to_string(),
            path: ctx
                .path
                .as_ref()
                .map_or_else(|| ctx.recorded_path.clone(), |path| path.path.clone()),
            route: route.map(|route| route.template.clone()),
            protocol: format!("{:?}", ctx.version),
        },
        action: (!action.is_empty()).then(|| action.to_owned()),
        resource: match (
            &ctx.route,
            ctx.own.as_ref().and_then(|own| own.resource.as_ref()),
        ) {
            (Some(matched), _) => Some(ResourceRecord {
                kind: matched.route.resource_type.clone(),
                id: matched.resource_id.clone(),
            }),
            (None, Some((kind, id))) => Some(ResourceRecord {
                kind: (*kind).to_owned(),
                id: id.clone(),
            }),
            (None, None) => None,
        },
        break_glass_reason: ctx.break_glass.clone(),
        decision: DecisionRecord {
            effect: if allowed { "allow" } else { "deny" },
            reason,
            policies,
            policy_version: ended.policy_version.to_owned(),
            detail,
            shadow,
            inputs,
        },
        outcome: Outcome {
            status: ended.status,
            upstream_status: ended.upstream_status,
            duration_ms: (ctx.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            response_bytes: ended.response_bytes,
            error_side: error.map(|e| e.side().as_str()),
            export_rows: ctx.export_rows,
            export_delivery: None,
        },
        severity: severity(ctx, category, error),
        category,
        lifecycle: ctx.lifecycle.clone(),
        prev_hash: String::new(),
    }
}

/// What Cedar decided a route's request on, for a replay with another policy set (none for the
/// gateway's own endpoints, whose acts have no route).
fn decision_inputs(ctx: &RequestContext<'_>) -> Option<invoiceguard_audit::DecisionInputs> {
    ctx.route.as_ref()?;
    let principal = ctx.principal.as_ref()?;
    Some(invoiceguard_audit::DecisionInputs {
        version: invoiceguard_audit::DECISION_INPUTS_VERSION,
        now_unix: ctx.now_unix,
        principal_type: match principal.kind {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
        .to_owned(),
        principal: principal.id.clone(),
        roles: principal.roles.clone(),
        scopes: principal.scopes.clone(),
        mfa: principal.mfa,
        acr: principal.acr.clone(),
        auth_time: principal.auth_time,
        source_ip: ctx.connection.peer.ip().to_string(),
        creator: ctx.resource.creator.clone(),
        amount: ctx.resource.amount,
        currency: ctx.resource.currency.clone(),
        status: ctx.resource.status.clone(),
        company: ctx.resource.company.clone(),
        export_rows_requested: ctx.export.rows_requested,
        export_within_limits: ctx.export.within_limits,
        export_approved: ctx.export.approved,
        break_glass_reason: ctx.break_glass.clone(),
        scopes_enforced: ctx.scopes_enforced,
    })
}

/// The event's severity: critical for break-glass, error for the gateway's or upstream's
/// failures, high for authentication and administration refusals and for a session used from
/// another device; a session's everyday acts (login, logout, sent to log in) are info.
fn severity(
    ctx: &RequestContext<'_>,
    category: &str,
    error: Option<&GatewayError>,
) -> &'static str {
    let device_changed = ctx
        .session
        .as_ref()
        .is_some_and(|session| session.device_changed_from.is_some());
    match error {
        _ if ctx.break_glass.is_some() => "critical",
        Some(e) if e.side() != crate::error::Side::Client => "error",
        _ if device_changed => "high",
        // Four eyes: every request for, decision on and use of an export approval.
        Some(GatewayError::ApprovalRequired(_)) => "high",
        None if ctx.approval.is_some() => "high",
        None if ctx.own.as_ref().is_some_and(|own| {
            matches!(
                own.action,
                "export:approve_request" | "export:reject_request"
            )
        }) =>
        {
            "high"
        }
        // Joiners, movers, leavers: every security event pushed, acted on or refused (a stream's
        // verification is routine).
        _ if category == "lifecycle" => match ctx.own.as_ref() {
            Some(own) if own.action == "ssf:verification" && error.is_none() => "info",
            _ => "high",
        },
        // A login, a logout, a browser sent to log in: the everyday acts of a session.
        None if ctx.own.is_some() => "info",
        Some(GatewayError::LoginRequired(_)) => "info",
        _ if matches!(category, "authentication" | "administration") => "high",
        None => "info",
        Some(_) => "warning",
    }
}

/// The event's category: what kind of act the SIEM files it under.
fn category(
    ctx: &RequestContext<'_>,
    action: &str,
    actor: Option<&Actor>,
    error: Option<&GatewayError>,
) -> &'static str {
    let device_changed = ctx
        .session
        .as_ref()
        .is_some_and(|session| session.device_changed_from.is_some());
    match error {
        _ if ctx.break_glass.is_some() => "break-glass",
        _ if ctx
            .own
            .as_ref()
            .is_some_and(|own| own.action.starts_with("ssf:")) =>
        {
            "lifecycle"
        }
        Some(
            GatewayError::Unauthenticated(_)
            | GatewayError::LoginRequired(_)
            | GatewayError::CrossSite(_),
        ) => "authentication",
        _ if ctx
            .own
            .as_ref()
            .is_some_and(|own| own.action.starts_with("export:")) =>
        {
            "export"
        }
        _ if ctx.own.is_some() || device_changed => "authentication",
        _ if action.starts_with("export:") => "export",
        _ if action.starts_with("settings:") || action.starts_with("user:") => "administration",
        _ if actor.is_some_and(|a| a.kind == "service_account") => "integration",
        _ => "authorization",
    }
}

/// The actor of an event: the principal as the SIEM sees it.
pub(crate) fn actor(principal: &Principal) -> Actor {
    Actor {
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
        grants: Vec::new(),
    }
}

/// Shadow mode: the candidate set's decision, kept only when it differs from the enforced one.
pub(crate) fn shadow_record(
    enforced: Option<&Decision>,
    shadow: &Decision,
    version: &str,
) -> Option<ShadowRecord> {
    let differs = enforced.is_none_or(|enforced| {
        enforced.effect != shadow.effect || enforced.policies != shadow.policies
    });
    differs.then(|| ShadowRecord {
        effect: if shadow.is_allowed() { "allow" } else { "deny" },
        policies: shadow.policies.clone(),
        policy_version: version.to_owned(),
    })
}

/// A request to the admin listener's revocation endpoints, as audited: every one, allowed or
/// refused, gets its event.
pub(crate) struct AdminAct<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) peer: SocketAddr,
    /// `revocation:create`, `revocation:lift`, `revocation:list`, or `revocation:other` for a
    /// method the endpoints do not take; `grant:…` for a grant call refused for its admin token.
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
            grants: Vec::new(),
        }),
        source: Source {
            ip: act.peer.ip().to_string(),
            user_agent: None,
            session: None,
        },
        request: RequestRecord {
            method: act.method.to_owned(),
            path: act.path.chars().take(MAX_RECORDED_PATH).collect(),
            route: Some(
                match act.path {
                    path if path.starts_with("/revocations/") => "/revocations/{subject}",
                    path if path.starts_with("/grants/") => "/grants/{id}",
                    path if path.starts_with("/grants") => "/grants",
                    _ => "/revocations",
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
            inputs: None,
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
            export_delivery: None,
        },
        severity,
        category: if act.action.starts_with("grant:") {
            "lifecycle"
        } else {
            "revocation"
        },
        lifecycle: None,
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
            session: None,
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
            inputs: None,
        },
        outcome: Outcome {
            status,
            upstream_status: None,
            duration_ms: 0.0,
            response_bytes: None,
            error_side: Some("client"),
            export_rows: None,
            export_delivery: None,
        },
        severity: "warning",
        category: "authorization",
        lifecycle: None,
        prev_hash: String::new(),
    }
}
