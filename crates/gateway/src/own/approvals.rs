//! `/.invoiceguard/approvals`: four eyes on exports, for the people who approve them. Every call
//! is authenticated like a route's (a token, or the browser's session) and every approval or
//! rejection is a Cedar decision (`export:approve_request` on the `ExportRequest`, its requester
//! as `creator`: `policies/approvals.cedar` — approvers only, never their own, fresh MFA).
//!
//! | method | path | answers |
//! |---|---|---|
//! | GET | `/.invoiceguard/approvals` | the pending export requests the caller may decide |
//! | GET | `/.invoiceguard/approvals/{id}` | one request (its requester, or one who may decide it) |
//! | POST | `/.invoiceguard/approvals/{id}/approve` | approves it: the requester's same export passes once |
//! | POST | `/.invoiceguard/approvals/{id}/reject` | rejects it |

use http::{Method, Request, StatusCode};
use invoiceguard_authn::Principal;
use invoiceguard_policy::{Decision, ExportFacts, RequestFacts, ResourceFacts, Target};

use crate::approvals::ExportRequest;
use crate::context::{OwnAct, RequestContext};
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::Gateway;

/// The Cedar action every decision on an export request is.
const APPROVE: &str = "export:approve_request";

pub(super) async fn endpoint<B>(
    gateway: &Gateway,
    request: &Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<http::Response<ResponseBody>, GatewayError> {
    let path = ctx.path()?.path.clone();
    let rest = path
        .strip_prefix("/.invoiceguard/approvals")
        .unwrap_or_default()
        .trim_start_matches('/');
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let (act, id) = match (request.method(), parts.as_slice()) {
        (&Method::GET, []) => ("export:list_requests", None),
        (&Method::GET, [id]) => ("export:read_request", Some(*id)),
        (&Method::POST, [id, "approve"]) => ("export:approve_request", Some(*id)),
        (&Method::POST, [id, "reject"]) => ("export:reject_request", Some(*id)),
        _ => return Err(GatewayError::NoRoute),
    };
    // An export request's id is `AR-` and 18 hex digits or dashes; anything else names none
    // (and never reaches the store as a key).
    if id.is_some_and(|id| {
        id.len() > 32
            || !id.starts_with("AR-")
            || !id[3..].bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    }) {
        return Err(GatewayError::NotFound);
    }
    ctx.own = Some(OwnAct {
        action: act,
        detail: None,
        resource: id.map(|id| ("ExportRequest", id.to_owned())),
    });
    let principal = crate::phases::authenticate_own(gateway, request, ctx).await?;
    let approvals = gateway.approvals();
    let Some(id) = id else {
        let mut visible = Vec::new();
        for pending in approvals.pending().await? {
            let decision = decide(gateway, ctx, &principal, &pending)?;
            if decision.is_allowed() || decision.step_up.is_some() {
                visible.push(pending);
            }
        }
        ctx.own = Some(OwnAct {
            action: act,
            detail: Some(format!("{} pending export request(s) shown", visible.len())),
            resource: None,
        });
        return json(&serde_json::json!({ "pending": visible }));
    };
    let export_request = approvals.get(id).await?.ok_or(GatewayError::NotFound)?;
    let decision = decide(gateway, ctx, &principal, &export_request)?;
    if act == "export:read_request" {
        if export_request.requester != principal.id && !decision.is_allowed() {
            return Err(GatewayError::NotFound);
        }
        return json(&export_request);
    }
    let step_up = decision.step_up;
    let allowed = decision.is_allowed();
    ctx.decision = Some(decision);
    match step_up {
        Some(step_up) if !allowed => return Err(GatewayError::StepUpRequired(step_up)),
        _ if !allowed => return Err(GatewayError::Forbidden),
        _ => {}
    }
    if export_request.status != "pending" {
        return Err(GatewayError::BadRequest(format!(
            "export request {id} is {}, not pending",
            export_request.status
        )));
    }
    let approve = act == "export:approve_request";
    let decided = approvals
        .decide(export_request, &principal.id, approve)
        .await?;
    ctx.own = Some(OwnAct {
        action: act,
        detail: Some(format!(
            "{} export request {} of {}: {} ({} rows){}",
            if approve { "approved" } else { "rejected" },
            decided.id,
            decided.requester,
            decided.export,
            decided.rows,
            if approve {
                format!("; usable once until {}", decided.expires)
            } else {
                String::new()
            }
        )),
        resource: Some(("ExportRequest", decided.id.clone())),
    });
    json(&decided)
}

/// The policies' decision on `principal` deciding `export_request`.
fn decide(
    gateway: &Gateway,
    ctx: &RequestContext<'_>,
    principal: &Principal,
    export_request: &ExportRequest,
) -> Result<Decision, GatewayError> {
    let facts = RequestFacts {
        source_ip: ctx.connection.peer.ip(),
        now_unix: ctx.now_unix,
        resource: ResourceFacts {
            creator: Some(export_request.requester.clone()),
            amount: i64::try_from(export_request.rows).ok(),
            ..ResourceFacts::default()
        },
        export: ExportFacts::default(),
        break_glass_reason: None,
        user_scopes_enforced: gateway.authn.config().enforce_user_scopes,
    };
    let target = Target {
        action: APPROVE,
        resource_type: "ExportRequest",
        resource_id: &export_request.id,
    };
    Ok(ctx.policy()?.authorize_target(principal, target, &facts))
}

fn json(value: &impl serde::Serialize) -> Result<http::Response<ResponseBody>, GatewayError> {
    let body = serde_json::to_string(value)
        .map_err(|e| GatewayError::Internal(format!("an approval answer: {e}")))?;
    Ok(super::respond(
        StatusCode::OK,
        "application/json",
        body,
        &[],
    ))
}
