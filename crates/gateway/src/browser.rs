//! A browser's request to a route (the authenticate phase calls this when the request carries
//! no bearer token, API key or client certificate and `[session]` is on): the session its
//! cookie names resumed (timeouts, device), cross-site changes refused (CSRF), and a browser
//! without a live session sent to log in — an API client without credentials still gets 401.
//! A policy's step-up for a session is a login too (`step_up`).

use std::sync::Arc;

use invoiceguard_authn::{AuthnError, Principal};
use invoiceguard_policy::StepUp;
use invoiceguard_session::{Device, LoginDemand, Sessions, check_csrf, id_hash};

use crate::context::{RequestContext, SessionSeen};
use crate::error::GatewayError;

/// The principal of the request's session.
pub(crate) async fn authenticate(
    sessions: &Sessions,
    session_id: Option<&str>,
    headers: &http::HeaderMap,
    ctx: &mut RequestContext<'_>,
) -> Result<Arc<Principal>, GatewayError> {
    let Some(id) = session_id else {
        return Err(if ctx.navigation {
            crate::own::login::required(sessions, ctx, LoginDemand::default(), "no session", false)
                .await
        } else {
            AuthnError::MissingToken.into()
        });
    };
    ctx.session = Some(SessionSeen {
        hash: id_hash(id),
        device_changed_from: None,
    });
    let device = Device::of(ctx.user_agent.as_deref(), ctx.connection.peer.ip());
    let resumed = match sessions.resume(id, &device, ctx.now_unix).await {
        Ok(resumed) => resumed,
        Err(error) if error.is_unavailable() || !ctx.navigation => return Err(error.into()),
        Err(error) => {
            // A session that ended (expired, logged out, ended for a new device) means logging
            // in again at the IdP, not being logged in silently by the IdP's own session.
            let demand = LoginDemand {
                reauthenticate: true,
                ..LoginDemand::default()
            };
            let cause = error.to_string();
            return Err(crate::own::login::required(sessions, ctx, demand, &cause, true).await);
        }
    };
    let principal = Arc::new(resumed.session.principal());
    ctx.principal = Some(principal.clone());
    ctx.session = Some(SessionSeen {
        hash: resumed.hash,
        device_changed_from: resumed.device_changed_from,
    });
    let config = sessions.config();
    check_csrf(
        &ctx.method,
        headers,
        config.origin(),
        &config.cors_origins,
        &resumed.session.csrf,
    )
    .map_err(GatewayError::CrossSite)?;
    Ok(principal)
}

/// A policy's step-up for a browser navigating with a session: a login asking for it, coming
/// back to the same page. Any other request keeps its 401 step-up problem document.
pub(crate) async fn step_up(
    sessions: Option<&Sessions>,
    ctx: &RequestContext<'_>,
    refusal: GatewayError,
) -> GatewayError {
    let (Some(sessions), GatewayError::StepUpRequired(StepUp { mfa, max_age_s })) =
        (sessions, &refusal)
    else {
        return refusal;
    };
    if ctx.session.is_none() || !ctx.navigation {
        return refusal;
    }
    let demand = LoginDemand {
        mfa: *mfa,
        max_age_s: *max_age_s,
        reauthenticate: true,
    };
    let cause = refusal
        .audit_detail()
        .unwrap_or_else(|| "step-up".to_owned());
    crate::own::login::required(sessions, ctx, demand, &cause, false).await
}
