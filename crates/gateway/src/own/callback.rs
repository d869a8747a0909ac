//! `GET /.invoiceguard/callback?code&state`: where the IdP sends the browser back. The login is
//! finished (`invoiceguard-session`: state, code, ID token), a revoked person is refused, and the
//! new session's cookie set. The browser then goes on to where it was with a page of the
//! gateway's own (a meta refresh), not a redirect: the navigation then starts on the gateway's
//! origin, so a `SameSite=Strict` cookie is sent with it too.

use std::sync::Arc;

use http::{Request, StatusCode};
use invoiceguard_session::{LOGIN_COOKIE, SESSION_COOKIE, Sessions, clear_cookie, set_cookie};

use crate::context::{OwnAct, RequestContext, SessionSeen};
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::Gateway;

pub(super) async fn endpoint<B>(
    gateway: &Gateway,
    sessions: &Sessions,
    request: &Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<http::Response<ResponseBody>, GatewayError> {
    ctx.own = Some(OwnAct {
        action: "session:login",
        detail: None,
        resource: None,
    });
    let headers = request.headers();
    let login_cookie = super::cookie(headers, LOGIN_COOKIE)?;
    let previous = super::cookie(headers, SESSION_COOKIE)?;
    let device =
        invoiceguard_session::Device::of(ctx.user_agent.as_deref(), ctx.connection.peer.ip());
    let started = sessions
        .finish_login(
            request.uri().query().unwrap_or_default(),
            login_cookie,
            previous,
            device,
            ctx.now_unix,
        )
        .await?;
    let principal = Arc::new(started.session.principal());
    // A login shows the person's roles as the IdP has them now (a mover's change is seen here).
    gateway
        .lifecycle
        .note_roles(&gateway.state, &gateway.audit, &principal)
        .await;
    ctx.principal = Some(principal);
    ctx.session = Some(SessionSeen {
        hash: started.hash.clone(),
        device_changed_from: None,
    });
    if let Err(revoked) = gateway
        .revocations
        .check(&started.session.subject, ctx.now_unix)
    {
        sessions.end(&started.hash).await?;
        return Err(revoked);
    }
    let config = sessions.config();
    ctx.own = Some(OwnAct {
        action: "session:login",
        detail: Some(format!(
            "session started on {}; idle timeout {}s, absolute {}s",
            started.session.device, config.idle_timeout_s, config.absolute_timeout_s
        )),
        resource: None,
    });
    let cookies = [
        set_cookie(SESSION_COOKIE, &started.id, config.same_site, None),
        clear_cookie(LOGIN_COOKIE),
    ];
    let target = html_escape(&started.return_to);
    let page = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={target}\">\
         <title>Logged in</title><p>Logged in. <a href=\"{target}\">Continue</a>.</p>\n"
    );
    Ok(super::respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        page,
        &cookies,
    ))
}

/// Text safe inside an HTML attribute.
fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_return_path_cannot_leave_its_attribute() {
        assert_eq!(
            super::html_escape("/a?x=\"><script>&'"),
            "/a?x=&quot;&gt;&lt;script&gt;&amp;&#39;"
        );
    }
}
