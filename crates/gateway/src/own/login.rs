//! `GET /.invoiceguard/login?return_to=/path`, and every other way a browser is sent to log in
//! (no session, an ended one, a policy's step-up): a login begun (`invoiceguard-session`), the
//! browser sent to the IdP with the login's `state` in a cookie, and back to `return_to` (a
//! same-origin path only) after it. One address begins at most 60 logins a minute (429 after):
//! each keeps a record in the store for the login's time.

use http::Request;
use invoiceguard_session::{
    LOGIN_COOKIE, LoginDemand, SESSION_COOKIE, SameSite, Sessions, clear_cookie, same_origin_path,
    set_cookie,
};

use crate::context::{OwnAct, RequestContext};
use crate::error::{GatewayError, LoginRedirect, ResponseBody, Throttle};

pub(super) async fn endpoint<B>(
    sessions: &Sessions,
    request: &Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<http::Response<ResponseBody>, GatewayError> {
    let return_to = form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "return_to")
        .map_or_else(|| "/".to_owned(), |(_, value)| value.into_owned());
    ctx.return_to = return_to;
    ctx.own = Some(OwnAct {
        action: "session:login_start",
        detail: None,
        resource: None,
    });
    let redirect = begin(
        sessions,
        ctx,
        LoginDemand::default(),
        "asked to log in",
        false,
    )
    .await?;
    Ok(super::redirect(&redirect.location, &redirect.cookies))
}

/// Begins a login for the request's browser: where to send it, and the cookies to set.
pub(crate) async fn begin(
    sessions: &Sessions,
    ctx: &RequestContext<'_>,
    demand: LoginDemand,
    cause: &str,
    clear_session: bool,
) -> Result<LoginRedirect, GatewayError> {
    if let Some(wait) = sessions.login_wait(ctx.connection.peer.ip()).await? {
        return Err(GatewayError::TooManyRequests(wait, Throttle::Rate));
    }
    let return_to = same_origin_path(&ctx.return_to);
    let (location, state) = sessions.begin_login(return_to, demand).await?;
    let mut cookies = vec![set_cookie(
        LOGIN_COOKIE,
        &state,
        // Lax whatever the session's setting: the IdP sends the browser back cross-site.
        SameSite::Lax,
        Some(sessions.config().login_timeout_s),
    )];
    if clear_session {
        cookies.push(clear_cookie(SESSION_COOKIE));
    }
    Ok(LoginRedirect {
        location,
        cookies,
        cause: cause.to_owned(),
        step_up: demand.is_step_up(),
    })
}

/// The refusal that sends a browser to log in: a redirect, or the login's own failure.
pub(crate) async fn required(
    sessions: &Sessions,
    ctx: &RequestContext<'_>,
    demand: LoginDemand,
    cause: &str,
    clear_session: bool,
) -> GatewayError {
    match begin(sessions, ctx, demand, cause, clear_session).await {
        Ok(redirect) => GatewayError::LoginRequired(Box::new(redirect)),
        Err(error) => error,
    }
}
