//! `POST /.invoiceguard/backchannel-logout`: the IdP ends sessions (OpenID Connect Back-Channel
//! Logout 1.0). The form's `logout_token` is verified (`invoiceguard-authn`), its `jti` used once
//! across replicas, and the sessions of its `sid` (or `sub`) ended in the shared store — so every
//! replica refuses them at their next request. 200 when done; 400 with an OAuth error otherwise,
//! as the specification asks.

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use invoiceguard_authn::AuthnError;
use invoiceguard_session::Sessions;

use crate::body::ClientBody;
use crate::context::{OwnAct, RequestContext};
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::Gateway;

/// The largest logout request read (a form with one signed token).
const MAX_LOGOUT_BODY: usize = 16 * 1024;

pub(super) async fn endpoint<B: ClientBody>(
    gateway: &Gateway,
    sessions: &Sessions,
    request: Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<http::Response<ResponseBody>, GatewayError> {
    ctx.own = Some(OwnAct {
        action: "session:backchannel_logout",
        detail: None,
        resource: None,
    });
    let body = crate::body::GuardedBody::new(
        request.into_body(),
        gateway.limits.max_body_bytes,
        gateway.body_times,
        None,
    );
    let bytes = Limited::new(body, MAX_LOGOUT_BODY)
        .collect()
        .await
        .map_err(|error| GatewayError::BadRequest(format!("logout request body: {error}")))?
        .to_bytes();
    let token = form_urlencoded::parse(&bytes)
        .find(|(key, _)| key == "logout_token")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| GatewayError::BadRequest("no `logout_token` in the form".to_owned()))?;
    match sessions.backchannel_logout(&token).await {
        Ok((logout, ended)) => {
            let whose = match (&logout.sid, &logout.sub) {
                (Some(sid), Some(sub)) => format!("IdP session {sid} of {sub}"),
                (Some(sid), None) => format!("IdP session {sid}"),
                (None, Some(sub)) => format!("subject {sub}"),
                (None, None) => "nobody".to_owned(),
            };
            ctx.own = Some(OwnAct {
                action: "session:backchannel_logout",
                detail: Some(format!(
                    "{ended} session(s) of {whose} ended by {}",
                    logout.issuer
                )),
                resource: None,
            });
            Ok(super::respond(
                StatusCode::OK,
                "application/json",
                "{}",
                &[],
            ))
        }
        Err(error) if error.is_unavailable() => Err(error.into()),
        Err(error) => Err(invalid(error)),
    }
}

/// A logout token that failed a check: 400, and the reason in the audit event.
fn invalid(error: AuthnError) -> GatewayError {
    GatewayError::BadRequest(format!(
        "logout token refused: {error} ({})",
        error.reason()
    ))
}
