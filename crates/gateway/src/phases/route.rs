//! The route phase: the route and resource the canonical path names in `routes.toml`; a path no
//! route names is refused (default deny, 404) — its caller still recorded when their credentials
//! are valid. It also reads the credentials the request offers, each header at most once.

use http::{Request, header};
use invoiceguard_authn::Credentials;

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::gateway::Gateway;

pub(super) async fn phase<'q, 'r: 'q, B>(
    gateway: &Gateway,
    request: &'q Request<B>,
    ctx: &mut RequestContext<'r>,
) -> Result<Credentials<'q>, GatewayError> {
    let connection: &'r crate::context::Connection = ctx.connection;
    let credentials = credentials(gateway, request.headers(), connection)?;
    let policy = ctx.policy()?;
    let path = ctx.path()?;
    let found = policy
        .routes()
        .find(request.method().as_str(), &path.segments);
    match found {
        Some(route) => {
            ctx.route = Some(route);
            Ok(credentials)
        }
        None => {
            if let Ok(principal) = gateway.authn.authenticate(credentials).await {
                ctx.principal = Some(principal);
            }
            Err(GatewayError::NoRoute)
        }
    }
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
