//! `POST /.invoiceguard/ssf/events`: the IdP's security events pushed to the gateway (RFC 8935
//! push delivery of Security Event Tokens, OpenID Shared Signals Framework 1.0). The body is one
//! token (`application/secevent+jwt`); the `Authorization` header set on the stream is required
//! when configured. 202 once the event is verified, its `jti` used once and acted on
//! (`../ssf.rs`); 400 with RFC 8935's `err` and `description` otherwise — every push audited,
//! accepted or refused, with what was done. Refused pushes count against their address as failed
//! logins do (`[limits] failed_auth_per_ip`): past the limit, 429 before any check.

use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use invoiceguard_authn::SetError;

use crate::body::ClientBody;
use crate::context::{OwnAct, RequestContext};
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::Gateway;
use crate::ssf::Receiver;

/// The largest token read.
const MAX_SET_BYTES: usize = 64 * 1024;

pub(super) async fn endpoint<B: ClientBody>(
    gateway: &Gateway,
    receiver: &Receiver,
    request: Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<http::Response<ResponseBody>, GatewayError> {
    ctx.own = Some(OwnAct {
        action: "ssf:push",
        detail: None,
        resource: None,
    });
    // Refused pushes count against their address like failed logins: a flood of forged events
    // is refused (429) before any signature is checked.
    let counter = format!("authfail:ip:{}", ctx.connection.peer.ip());
    let window = std::time::Duration::from_secs(gateway.limits.failed_auth_window_s);
    let limit = gateway.limits.failed_auth_per_ip;
    if let Ok(Some(wait)) = gateway.state().limit(&counter, limit, window, false).await {
        return Err(GatewayError::TooManyRequests(
            wait,
            crate::error::Throttle::Lockout,
        ));
    }
    let pushed = push(gateway, receiver, request, ctx).await;
    if let Err(GatewayError::SetRefused(refused)) = &pushed
        && refused.code != "unavailable"
        && let Err(error) = gateway.state().limit(&counter, limit, window, true).await
    {
        tracing::warn!(%error, "a refused push not counted");
    }
    pushed
}

/// The push itself: authorized, a token, verified and acted on.
async fn push<B: ClientBody>(
    gateway: &Gateway,
    receiver: &Receiver,
    request: Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<http::Response<ResponseBody>, GatewayError> {
    if !receiver.takes_pushes() {
        return Err(GatewayError::SetRefused(SetError::invalid(
            "this gateway polls for security events; pushes are not taken",
        )));
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if !receiver.push_authorized(presented) {
        return Err(GatewayError::SetRefused(SetError {
            code: "authentication_failed",
            description: "the push does not carry the Authorization set on the stream".to_owned(),
        }));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("application/secevent+jwt") {
        return Err(GatewayError::SetRefused(SetError::invalid(
            "the body must be `application/secevent+jwt`",
        )));
    }
    let body = crate::body::GuardedBody::new(
        request.into_body(),
        gateway.limits.max_body_bytes,
        gateway.body_times,
        None,
    );
    let bytes = Limited::new(body, MAX_SET_BYTES)
        .collect()
        .await
        .map_err(|error| GatewayError::SetRefused(SetError::invalid(format!("body: {error}"))))?
        .to_bytes();
    let token = std::str::from_utf8(&bytes)
        .map_err(|_| GatewayError::SetRefused(SetError::invalid("the body is not text")))?
        .trim();
    let received = crate::ssf::receive(gateway, token)
        .await
        .map_err(GatewayError::SetRefused)?;
    let action = match received.record.event_type.as_deref() {
        Some(kind) => ssf_action(kind),
        None => "ssf:push",
    };
    ctx.own = Some(OwnAct {
        action,
        detail: Some(received.detail),
        resource: Some(("Subject", received.record.subject.clone())),
    });
    ctx.lifecycle = Some(received.record);
    Ok(super::respond(
        StatusCode::ACCEPTED,
        "application/json",
        "",
        &[],
    ))
}

/// The audited action of an event type: `ssf:` and its last segment, for the types the gateway
/// asks for (a static name each).
fn ssf_action(event_type: &str) -> &'static str {
    match event_type.rsplit('/').next().unwrap_or_default() {
        "session-revoked" => "ssf:session-revoked",
        "credential-change" => "ssf:credential-change",
        "assurance-level-change" => "ssf:assurance-level-change",
        "token-claims-change" => "ssf:token-claims-change",
        "account-disabled" => "ssf:account-disabled",
        "account-enabled" => "ssf:account-enabled",
        "account-purged" => "ssf:account-purged",
        "credential-compromise" => "ssf:credential-compromise",
        "sessions-revoked" => "ssf:sessions-revoked",
        "verification" => "ssf:verification",
        _ => "ssf:other",
    }
}
