//! `GET` or `POST /.invoiceguard/logout`: the person ends their session (RP-Initiated Logout
//! 1.0). The session is ended on every replica, its cookie cleared, and the browser sent to the
//! IdP's `end_session_endpoint` to end the IdP's session too (which then tells every client by
//! back-channel logout). A logout from another site is refused, so no page can log a person out
//! behind their back.

use std::sync::Arc;

use http::{Method, Request};
use invoiceguard_session::{Device, SESSION_COOKIE, Sessions, check_csrf, clear_cookie, id_hash};

use crate::context::{OwnAct, RequestContext, SessionSeen};
use crate::error::{GatewayError, ResponseBody};

pub(super) async fn endpoint<B>(
    sessions: &Sessions,
    request: &Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<http::Response<ResponseBody>, GatewayError> {
    ctx.own = Some(OwnAct {
        action: "session:logout",
        detail: None,
        resource: None,
    });
    let headers = request.headers();
    let config = sessions.config();
    // A GET is checked as strictly as a POST: a link or an image on another site must not end
    // a session. Only the session's own pages (and the address bar) log out.
    let from_elsewhere = matches!(
        headers
            .get("sec-fetch-site")
            .map(http::HeaderValue::as_bytes),
        Some(b"cross-site" | b"same-site")
    );
    if from_elsewhere || request.method() == Method::POST {
        let fetch_metadata_none = headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes() == b"none");
        if from_elsewhere || !fetch_metadata_none {
            check_csrf(
                &Method::POST,
                headers,
                config.origin(),
                &config.cors_origins,
                "",
            )
            .map_err(GatewayError::CrossSite)?;
        }
    }
    let mut ended = false;
    if let Some(id) = super::cookie(headers, SESSION_COOKIE)? {
        let device = Device::of(ctx.user_agent.as_deref(), ctx.connection.peer.ip());
        let hash = id_hash(id);
        if let Ok(resumed) = sessions.resume(id, &device, ctx.now_unix).await {
            ctx.principal = Some(Arc::new(resumed.session.principal()));
        }
        ctx.session = Some(SessionSeen {
            hash: hash.clone(),
            device_changed_from: None,
        });
        ended = sessions.end(&hash).await?;
    }
    let location = sessions.logout_location();
    ctx.own = Some(OwnAct {
        action: "session:logout",
        detail: Some(if ended {
            "session ended; sent to the IdP's end-session endpoint".to_owned()
        } else {
            "no live session; sent to the IdP's end-session endpoint".to_owned()
        }),
        resource: None,
    });
    Ok(super::redirect(&location, &[clear_cookie(SESSION_COOKIE)]))
}

/// `GET /.invoiceguard/logged-out`: the page the IdP sends the browser back to after its logout.
pub(super) fn logged_out(ctx: &mut RequestContext<'_>) -> http::Response<ResponseBody> {
    ctx.own = Some(OwnAct {
        action: "session:logged_out",
        detail: None,
        resource: None,
    });
    super::respond(
        http::StatusCode::OK,
        "text/html; charset=utf-8",
        "<!doctype html><meta charset=utf-8><title>Logged out</title>\n\
         <h1>Logged out</h1><p id=logged-out>Your session has ended. <a href=\"/.invoiceguard/login\">Log in again</a>.</p>\n",
        &[],
    )
}
