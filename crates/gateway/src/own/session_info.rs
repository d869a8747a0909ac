//! `GET /.invoiceguard/session`: the browser's session as the web UI may show it — who, with
//! which roles and scopes, how they logged in, when it ends — and the CSRF token a client
//! without Fetch Metadata or `Origin` sends with its changes (`X-CSRF-Token`). 401 without one.

use std::sync::Arc;

use http::{Request, StatusCode};
use invoiceguard_authn::AuthnError;
use invoiceguard_session::{Device, SESSION_COOKIE, Sessions};

use crate::context::{OwnAct, RequestContext, SessionSeen};
use crate::error::{GatewayError, ResponseBody};

pub(super) async fn endpoint<B>(
    sessions: &Sessions,
    request: &Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<http::Response<ResponseBody>, GatewayError> {
    ctx.own = Some(OwnAct {
        action: "session:read",
        detail: None,
        resource: None,
    });
    let id = super::cookie(request.headers(), SESSION_COOKIE)?.ok_or(AuthnError::NoSession)?;
    let device = Device::of(ctx.user_agent.as_deref(), ctx.connection.peer.ip());
    ctx.session = Some(SessionSeen {
        hash: invoiceguard_session::id_hash(id),
        device_changed_from: None,
    });
    let resumed = sessions.resume(id, &device, ctx.now_unix).await?;
    let session = &resumed.session;
    ctx.principal = Some(Arc::new(session.principal()));
    ctx.session = Some(SessionSeen {
        hash: resumed.hash.clone(),
        device_changed_from: resumed.device_changed_from.clone(),
    });
    let config = sessions.config();
    let body = serde_json::json!({
        "subject": session.subject,
        "roles": session.roles,
        "scopes": session.scopes,
        "amr": session.amr,
        "acr": session.acr,
        "mfa": session.mfa,
        "auth_time": session.auth_time,
        "started": session.created,
        "idle_expires": session.last_seen + config.idle_timeout_s,
        "absolute_expires": session.created + config.absolute_timeout_s,
        "device": session.device,
        "csrf_token": session.csrf,
    });
    Ok(super::respond(
        StatusCode::OK,
        "application/json",
        body.to_string(),
        &[],
    ))
}
