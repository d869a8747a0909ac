//! The route phase: the route and resource the canonical path names in `routes.toml`; a path no
//! route names is refused (default deny, 404) — its caller still recorded when their credentials
//! are valid. It also reads the credentials the request offers, each header at most once.

use http::{Request, header};
use invoiceguard_authn::Credentials;

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::gateway::Gateway;

/// What a request offers to prove who sent it: its credentials, and a browser session's id.
pub(super) struct Offered<'q> {
    pub(super) credentials: Credentials<'q>,
    /// The session cookie's value, when `[session]` is on and the request has one.
    pub(super) session_id: Option<&'q str>,
    pub(super) headers: &'q http::HeaderMap,
}

impl Offered<'_> {
    /// Whether a bearer token, an API key or a client certificate is offered: it is then what
    /// authenticates the request, and a session cookie beside it is ignored (a browser sends
    /// its cookie with every request; the explicit credential is the one meant).
    pub(super) fn has_credentials(&self) -> bool {
        let c = &self.credentials;
        c.authorization.is_some() || c.api_key.is_some() || c.client_certificate.is_some()
    }
}

pub(super) async fn phase<'q, 'r: 'q, B>(
    gateway: &Gateway,
    request: &'q Request<B>,
    ctx: &mut RequestContext<'r>,
) -> Result<Offered<'q>, GatewayError> {
    let connection: &'r crate::context::Connection = ctx.connection;
    let offered = offered(gateway, request, connection)?;
    let policy = ctx.policy()?;
    let path = ctx.path()?;
    let found = policy
        .routes()
        .find(request.method().as_str(), &path.segments);
    match found {
        Some(route) => {
            ctx.route = Some(route);
            Ok(offered)
        }
        None => {
            if offered.has_credentials()
                && let Ok(principal) = gateway.authn.authenticate(offered.credentials).await
            {
                ctx.principal = Some(principal);
            }
            Err(GatewayError::NoRoute)
        }
    }
}

/// What the request offers to prove who sent it.
pub(super) fn offered<'q, B>(
    gateway: &Gateway,
    request: &'q Request<B>,
    connection: &'q crate::context::Connection,
) -> Result<Offered<'q>, GatewayError> {
    let headers = request.headers();
    let credentials = credentials(gateway, headers, connection)?;
    let session_id = match gateway.sessions {
        Some(_) => invoiceguard_session::find_cookie(headers, invoiceguard_session::SESSION_COOKIE)
            .map_err(GatewayError::BadRequest)?,
        None => None,
    };
    Ok(Offered {
        credentials,
        session_id,
        headers,
    })
}

/// The request's credentials, each header at most once: a second `Authorization` or API key
/// would be one the gateway did not verify, and could reach the upstream (400).
fn credentials<'q>(
    gateway: &Gateway,
    headers: &'q http::HeaderMap,
    connection: &'q crate::context::Connection,
) -> Result<Credentials<'q>, GatewayError> {
    let once = |name: &http::HeaderName| {
        let mut values = headers.get_all(name).iter();
        let first = values.next();
        match values.next() {
            Some(_) => Err(GatewayError::BadRequest(format!(
                "more than one `{name}` header"
            ))),
            None => Ok(first),
        }
    };
    Ok(Credentials {
        authorization: once(&header::AUTHORIZATION)?,
        api_key: once(&gateway.api_key_header)?,
        client_certificate: connection.client_certificate.as_ref(),
    })
}
