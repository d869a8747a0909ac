//! The gateway's own endpoints, under `/.invoiceguard/`: they run after the normalize phase and
//! before any route is looked up, are never forwarded upstream, and each request to them gets its
//! audit event like any other (its action names what was done: `session:login`, …).
//!
//! | path | method | file | does |
//! |---|---|---|---|
//! | `/.invoiceguard/login` | GET | `login.rs` | sends the browser to log in (`?return_to=/path`) |
//! | `/.invoiceguard/callback` | GET | `callback.rs` | finishes a login: a new session |
//! | `/.invoiceguard/session` | GET | `session_info.rs` | the session: who, until when, its CSRF token |
//! | `/.invoiceguard/logout` | GET, POST | `logout.rs` | ends the session, then the IdP's (RP-initiated) |
//! | `/.invoiceguard/logged-out` | GET | `logout.rs` | where the IdP sends the browser back: "logged out" |
//! | `/.invoiceguard/backchannel-logout` | POST | `backchannel.rs` | the IdP ends sessions (Back-Channel Logout 1.0) |
//! | `/.invoiceguard/approvals…` | GET, POST | `approvals.rs` | export requests, approved or rejected by another person (four eyes) |
//! | `/.invoiceguard/ssf/events` | POST | `ssf.rs` | the IdP's security events, pushed (Shared Signals, RFC 8935) |
//!
//! Without a `[session]` section the session endpoints answer 403, as a path no route names;
//! without `[ssf]`, the push endpoint too.

mod approvals;
mod backchannel;
mod callback;
pub(crate) mod login;
mod logout;
mod session_info;
mod ssf;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::body::ClientBody;
use crate::context::RequestContext;
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::Gateway;

/// The path prefix of the gateway's own endpoints.
pub(crate) const PREFIX: &str = "/.invoiceguard/";

/// Answers a request to one of the gateway's own endpoints.
pub(crate) async fn handle<B: ClientBody>(
    gateway: &Gateway,
    request: Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let endpoint = ctx.path()?.path.clone();
    if endpoint == "/.invoiceguard/approvals" || endpoint.starts_with("/.invoiceguard/approvals/") {
        // Boxed as a trait object: a rare path, whose future would otherwise be nested in
        // every request's (and deep enough to exhaust the compiler's trait checks).
        let endpoint: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
            Box::pin(approvals::endpoint(gateway, &request, ctx));
        return endpoint.await;
    }
    if endpoint == crate::ssf::PUSH_PATH {
        return match (request.method(), gateway.ssf.as_ref()) {
            (&Method::POST, Some(receiver)) => {
                let endpoint: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
                    Box::pin(ssf::endpoint(gateway, receiver, request, ctx));
                endpoint.await
            }
            _ => Err(GatewayError::NoRoute),
        };
    }
    let Some(sessions) = gateway.sessions.as_deref() else {
        return Err(GatewayError::NoRoute);
    };
    match (request.method(), endpoint.as_str()) {
        (&Method::GET, "/.invoiceguard/login") => login::endpoint(sessions, &request, ctx).await,
        (&Method::GET, "/.invoiceguard/callback") => {
            callback::endpoint(gateway, sessions, &request, ctx).await
        }
        (&Method::GET, "/.invoiceguard/session") => {
            session_info::endpoint(sessions, &request, ctx).await
        }
        (&Method::GET | &Method::POST, "/.invoiceguard/logout") => {
            logout::endpoint(sessions, &request, ctx).await
        }
        (&Method::GET, "/.invoiceguard/logged-out") => Ok(logout::logged_out(ctx)),
        (&Method::POST, "/.invoiceguard/backchannel-logout") => {
            backchannel::endpoint(gateway, sessions, request, ctx).await
        }
        _ => Err(GatewayError::NoRoute),
    }
}

/// A response of the gateway's own, never cached.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
    cookies: &[String],
) -> Response<ResponseBody> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    for cookie in cookies {
        if let Ok(cookie) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, cookie);
        }
    }
    response
}

/// A redirect of the gateway's own (`303 See Other`: a `GET` of `location` whatever the method).
pub(crate) fn redirect(location: &str, cookies: &[String]) -> Response<ResponseBody> {
    let mut response = respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        "",
        cookies,
    );
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The value of a cookie, or 400 when it is sent twice.
pub(crate) fn cookie<'h>(
    headers: &'h http::HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, GatewayError> {
    invoiceguard_session::find_cookie(headers, name).map_err(GatewayError::BadRequest)
}
