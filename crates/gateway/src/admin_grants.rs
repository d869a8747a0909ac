//! Time-limited role grants at the admin listener (`invoiceguard grant`): `GET /grants` lists
//! them, `POST /grants` gives one, `DELETE /grants/{id}` lifts one. Every call needs the admin
//! token (the operator's channel, as for revocations); giving or lifting also needs the granter's
//! own access token in `X-Invoiceguard-Granter` — the granter is a person, authenticated like any
//! caller (revocations and security events included), and whether they may give this role to
//! this person is Cedar's decision (`role:grant` on a `RoleGrant`: `policies/grants.cedar`);
//! lifting is `user:assign_role` on the grantee's `UserAccount`. A grant names its ticket and
//! reason; it is kept in the state store, counts on every replica until its end, then stops by
//! itself (`lifecycle.rs`). Every call is an audit event (`category: lifecycle`), allowed or
//! refused, with the grant's ticket.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use invoiceguard_audit::{AuditEvent, LifecycleRecord, RequestRecord, Source};
use invoiceguard_authn::{Credentials, Principal};
use invoiceguard_policy::{ExportFacts, RequestFacts, ResourceFacts, Target};
use invoiceguard_state::Table;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{json_response, problem};
use crate::gateway::Gateway;
use crate::lifecycle::Grant;

/// The header carrying the granter's access token.
pub(crate) const GRANTER_HEADER: &str = "x-invoiceguard-granter";

/// The longest a grant may last: a substitute's cover, not a role for good (that is the IdP's).
const MAX_GRANT_S: u64 = 90 * 86_400;

/// A grant as asked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    subject: String,
    role: String,
    until_unix: u64,
    reason: String,
    ticket: String,
}

/// One call, as its audit event will tell it.
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    peer: SocketAddr,
    action: &'static str,
    granter: Option<std::sync::Arc<Principal>>,
    record: LifecycleRecord,
    status: u16,
    detail: String,
    policies: Vec<String>,
}

/// Serves `/grants` and `/grants/{id}` (the admin token already checked by the caller).
pub(crate) async fn handle(
    gateway: &Gateway,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut call = Call {
        method: &method,
        path: &path,
        peer,
        action: match (&method, path.as_str()) {
            (&Method::GET, _) => "grant:list",
            (&Method::POST, "/grants") => "grant:create",
            (&Method::DELETE, _) => "grant:lift",
            _ => "grant:other",
        },
        granter: None,
        record: LifecycleRecord {
            subject: "*".to_owned(),
            source: "grant",
            ..LifecycleRecord::default()
        },
        status: 0,
        detail: String::new(),
        policies: Vec::new(),
    };
    let response = match (&method, path.as_str()) {
        (&Method::GET, "/grants") => list(gateway),
        (&Method::POST, "/grants") => create(gateway, request, &mut call).await,
        (&Method::DELETE, _) if path.starts_with("/grants/") => {
            lift(gateway, &request, &mut call).await
        }
        _ => {
            call.detail = "GET or POST /grants, DELETE /grants/{id}".to_owned();
            problem(StatusCode::METHOD_NOT_ALLOWED, &call.detail)
        }
    };
    call.status = response.status().as_u16();
    record(gateway, call);
    response
}

/// `GET /grants`: every grant, soonest ending first.
fn list(gateway: &Gateway) -> Response<Full<Bytes>> {
    let grants: Vec<Value> = gateway
        .lifecycle
        .grants()
        .iter()
        .map(|grant| json!(grant))
        .collect();
    json_response(StatusCode::OK, &json!(grants))
}

/// The granter, authenticated by their own access token as any caller is.
async fn granter(
    gateway: &Gateway,
    request: &Request<Incoming>,
) -> Result<std::sync::Arc<Principal>, (StatusCode, String)> {
    let Some(token) = request.headers().get(GRANTER_HEADER) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            format!("`{GRANTER_HEADER}` must carry the granter's own access token (Bearer …)"),
        ));
    };
    let credentials = Credentials {
        authorization: Some(token),
        api_key: None,
        client_certificate: None,
    };
    let principal = gateway
        .authn()
        .authenticate(credentials)
        .await
        .map_err(|error| {
            (
                StatusCode::UNAUTHORIZED,
                format!("the granter's token: {error}"),
            )
        })?;
    let now = crate::trace::now_unix();
    gateway
        .revocations
        .check(&principal.id, now)
        .and_then(|()| gateway.lifecycle.apply(principal, now))
        .map(|applied| applied.principal)
        .map_err(|error| (StatusCode::FORBIDDEN, format!("the granter: {error}")))
}

/// A name usable as a subject, role or ticket: printable, no spaces, bounded.
fn is_name(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_graphic())
}

/// `POST /grants`: decided by Cedar, then kept for every replica.
async fn create(
    gateway: &Gateway,
    request: Request<Incoming>,
    call: &mut Call<'_>,
) -> Response<Full<Bytes>> {
    let granter = match granter(gateway, &request).await {
        Ok(granter) => granter,
        Err((status, detail)) => {
            call.detail = detail;
            return problem(status, &call.detail);
        }
    };
    call.granter = Some(granter.clone());
    let body = match Limited::new(request.into_body(), 16 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            call.detail = "body too large or unreadable".to_owned();
            return problem(StatusCode::BAD_REQUEST, &call.detail);
        }
    };
    let asked: GrantRequest = match serde_json::from_slice(&body) {
        Ok(asked) => asked,
        Err(error) => {
            call.detail = format!(
                "expected {{\"subject\", \"role\", \"until_unix\", \"reason\", \"ticket\"}}: {error}"
            );
            return problem(StatusCode::BAD_REQUEST, &call.detail);
        }
    };
    call.record.subject.clone_from(&asked.subject);
    call.record.role = Some(asked.role.clone());
    call.record.until_unix = Some(asked.until_unix);
    call.record.ticket = Some(asked.ticket.clone());
    call.record.reason = Some(asked.reason.clone());
    let now = crate::trace::now_unix();
    let problem_of = if !is_name(&asked.subject, 256) {
        Some("`subject` must be 1 to 256 printable characters without spaces".to_owned())
    } else if !is_name(&asked.role, 64) {
        Some("`role` must be 1 to 64 printable characters without spaces".to_owned())
    } else if !is_name(&asked.ticket, 64) {
        Some("`ticket` must name the request's ticket (1 to 64 printable characters)".to_owned())
    } else if asked.reason.trim().is_empty()
        || asked.reason.len() > 256
        || asked.reason.chars().any(char::is_control)
    {
        Some("`reason` must say why, in 1 to 256 printable characters".to_owned())
    } else if asked.until_unix <= now || asked.until_unix > now + MAX_GRANT_S {
        Some(format!(
            "`until_unix` must be in the future and at most {} days ahead",
            MAX_GRANT_S / 86_400
        ))
    } else {
        None
    };
    if let Some(detail) = problem_of {
        call.detail = detail;
        return problem(StatusCode::BAD_REQUEST, &call.detail);
    }
    let Some(policy) = gateway.policies.current() else {
        call.detail = "no policy set is loaded".to_owned();
        return problem(StatusCode::SERVICE_UNAVAILABLE, &call.detail);
    };
    if !policy.roles().contains(&asked.role) {
        call.detail = format!("`{}` is not a role the policies know", asked.role);
        return problem(StatusCode::BAD_REQUEST, &call.detail);
    }
    // The grantee's roles with this one: those of their last token the gateway saw, the
    // grants in force, and this one.
    let seen = match gateway.state().roles_of(&asked.subject).await {
        Ok(seen) => seen.unwrap_or_default(),
        Err(error) => {
            call.detail = error.to_string();
            return problem(StatusCode::SERVICE_UNAVAILABLE, &call.detail);
        }
    };
    let mut roles_after: Vec<String> = seen
        .split(' ')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let roles_before = roles_after.clone();
    roles_after.extend(gateway.lifecycle.granted_roles(&asked.subject, now));
    roles_after.push(asked.role.clone());
    roles_after.sort();
    roles_after.dedup();
    call.record.roles_before = Some(roles_before);
    call.record.roles_after = Some(roles_after.clone());
    let id = format!("grant-{}", crate::trace::random_uuid());
    call.record.grant_id = Some(id.clone());
    let facts = RequestFacts {
        source_ip: call.peer.ip(),
        now_unix: now,
        resource: ResourceFacts {
            grantee: Some(asked.subject.clone()),
            role: Some(asked.role.clone()),
            roles_after,
            ..ResourceFacts::default()
        },
        export: ExportFacts::default(),
        break_glass_reason: None,
        user_scopes_enforced: gateway.authn().config().enforce_user_scopes,
    };
    let target = Target {
        action: "role:grant",
        resource_type: "RoleGrant",
        resource_id: &id,
    };
    let decision = policy.authorize_target(&granter, target, &facts);
    call.policies.clone_from(&decision.policies);
    if !decision.is_allowed() {
        call.record.acted.push("refused".to_owned());
        call.detail = match &decision.step_up {
            Some(_) => "the granter must log in again (multi-factor, recently) to grant".to_owned(),
            None => format!("the policies do not let {} grant this", granter.id),
        };
        let status = if decision.step_up.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        return problem(status, &call.detail);
    }
    let grant = Grant {
        id: id.clone(),
        subject: asked.subject,
        role: asked.role,
        until_unix: asked.until_unix,
        ticket: asked.ticket,
        reason: asked.reason,
        granted_by: granter.id.clone(),
        granted_at: now,
    };
    let text = json!(grant).to_string();
    if let Err(error) = gateway.state().table_put(Table::Grants, &id, &text).await {
        call.detail = error.to_string();
        return problem(StatusCode::SERVICE_UNAVAILABLE, &call.detail);
    }
    gateway.lifecycle.refresh(gateway.state()).await;
    call.record.acted.push("granted".to_owned());
    call.detail = format!(
        "{} granted {} to {} until {} (ticket {})",
        grant.granted_by, grant.role, grant.subject, grant.until_unix, grant.ticket
    );
    json_response(StatusCode::CREATED, &json!(grant))
}

/// `DELETE /grants/{id}`: the grant ends now, on every replica.
async fn lift(
    gateway: &Gateway,
    request: &Request<Incoming>,
    call: &mut Call<'_>,
) -> Response<Full<Bytes>> {
    let id = call.path.trim_start_matches("/grants/").to_owned();
    let Some(grant) = gateway.lifecycle.grants().into_iter().find(|g| g.id == id) else {
        call.detail = format!("no grant `{id}`");
        return problem(StatusCode::NOT_FOUND, &call.detail);
    };
    call.record = crate::lifecycle::grant_record(&grant, "lift asked");
    call.record.acted.clear();
    let granter = match granter(gateway, request).await {
        Ok(granter) => granter,
        Err((status, detail)) => {
            call.detail = detail;
            return problem(status, &call.detail);
        }
    };
    call.granter = Some(granter.clone());
    let Some(policy) = gateway.policies.current() else {
        call.detail = "no policy set is loaded".to_owned();
        return problem(StatusCode::SERVICE_UNAVAILABLE, &call.detail);
    };
    let facts = RequestFacts {
        source_ip: call.peer.ip(),
        now_unix: crate::trace::now_unix(),
        resource: ResourceFacts::default(),
        export: ExportFacts::default(),
        break_glass_reason: None,
        user_scopes_enforced: gateway.authn().config().enforce_user_scopes,
    };
    let target = Target {
        action: "user:assign_role",
        resource_type: "UserAccount",
        resource_id: &grant.subject,
    };
    let decision = policy.authorize_target(&granter, target, &facts);
    call.policies.clone_from(&decision.policies);
    if !decision.is_allowed() {
        call.record.acted.push("refused".to_owned());
        call.detail = format!("the policies do not let {} lift this grant", granter.id);
        return problem(StatusCode::FORBIDDEN, &call.detail);
    }
    match gateway.state().table_remove(Table::Grants, &id).await {
        Ok(_) => {
            gateway.lifecycle.refresh(gateway.state()).await;
            call.record.acted.push("lifted".to_owned());
            call.detail = format!(
                "{} lifted grant {} of {} to {} (ticket {})",
                granter.id, grant.id, grant.role, grant.subject, grant.ticket
            );
            json_response(StatusCode::OK, &json!({"lifted": id}))
        }
        Err(error) => {
            call.detail = error.to_string();
            problem(StatusCode::SERVICE_UNAVAILABLE, &call.detail)
        }
    }
}

/// The call's audit event: the granter as actor (when authenticated), the grant, its outcome.
fn record(gateway: &Gateway, call: Call<'_>) {
    let allowed = call.status < 400;
    let severity = if allowed && call.action == "grant:list" {
        "info"
    } else {
        "high"
    };
    let mut event = AuditEvent::system(call.action, severity, call.detail);
    event.category = "lifecycle";
    event.actor = call.granter.as_deref().map(crate::audit_trail::actor);
    event.source = Source {
        ip: call.peer.ip().to_string(),
        user_agent: None,
        session: None,
    };
    event.request = RequestRecord {
        method: call.method.to_string(),
        path: call.path.chars().take(256).collect(),
        route: Some(
            if call.path.starts_with("/grants/") {
                "/grants/{id}"
            } else {
                "/grants"
            }
            .to_owned(),
        ),
        protocol: "HTTP/1.1".to_owned(),
    };
    event.resource = Some(invoiceguard_audit::ResourceRecord {
        kind: "Subject".to_owned(),
        id: call.record.subject.clone(),
    });
    event.decision.effect = if allowed { "allow" } else { "deny" };
    event.decision.reason = match call.status {
        401 if call.granter.is_some() => "step_up",
        401 => "unauthenticated",
        403 => "policy",
        503 => "unavailable",
        400..=499 => "bad_request",
        _ => "admin",
    };
    event.decision.policies = call.policies;
    event.decision.policy_version = gateway.policies.version();
    event.outcome.status = call.status;
    event.outcome.error_side = match call.status {
        503 => Some("internal"),
        400..=499 => Some("client"),
        _ => None,
    };
    event.lifecycle = (call.action != "grant:list").then_some(call.record);
    if let Err(error) = gateway.audit().record(event) {
        tracing::error!(%error, "audit event of a grant call not written");
    }
}
