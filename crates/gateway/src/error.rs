//! Every way a request can be refused or fail, classified once: which side is at fault, which
//! status it becomes, and the one place it turns into a response.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use invoiceguard_authn::AuthnError;

/// The body of every response the gateway sends: the upstream's stream, or a problem document.
pub(crate) type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// Which side caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The client sent something wrong or is not allowed.
    Client,
    /// The upstream or the IdP failed.
    Upstream,
    /// The gateway itself failed.
    Internal,
}

impl Side {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Internal => "internal",
        }
    }
}

/// Why a request was not forwarded, or did not get the upstream's answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed or ambiguous (normalize phase).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No route of `routes.toml` matches (default deny).
    #[error("no route matches")]
    NoRoute,
    /// The caller could not be authenticated.
    #[error("not authenticated: {0}")]
    Unauthenticated(#[from] AuthnError),
    /// The policies deny the request.
    #[error("denied by policy")]
    Forbidden,
    /// The upstream could not be reached or broke the connection.
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The gateway failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The status the client receives.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unauthenticated(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Which side is at fault.
    pub(crate) fn side(&self) -> Side {
        match self {
            Self::BadRequest(_) | Self::NoRoute | Self::Forbidden => Side::Client,
            Self::Unauthenticated(e) if e.is_unavailable() => Side::Upstream,
            Self::Unauthenticated(_) => Side::Client,
            Self::UpstreamUnreachable(_) | Self::UpstreamTimeout => Side::Upstream,
            Self::Internal(_) => Side::Internal,
        }
    }

    /// The audit reason code of the refusal.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NoRoute => "no_route",
            Self::Unauthenticated(e) if e.is_unavailable() => "unavailable",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden => "policy",
            Self::UpstreamUnreachable(_) | Self::UpstreamTimeout => "upstream_failed",
            Self::Internal(_) => "internal",
        }
    }

    /// Detail for the audit event (never shown to the client beyond what `problem` says).
    pub(crate) fn audit_detail(&self) -> Option<String> {
        match self {
            Self::BadRequest(why) => Some(why.clone()),
            Self::Unauthenticated(e) => Some(e.reason().to_owned()),
            Self::UpstreamUnreachable(why) | Self::Internal(why) => Some(why.clone()),
            Self::UpstreamTimeout => Some("timeout".to_owned()),
            Self::NoRoute | Self::Forbidden => None,
        }
    }

    /// The problem type URI, title and the detail the client may see: enough to act on, nothing
    /// about the policies or the upstream's internals.
    fn problem(&self) -> (&'static str, &'static str, String) {
        match self {
            Self::BadRequest(why) => ("bad-request", "Bad request", why.clone()),
            Self::NoRoute => (
                "access-denied",
                "Forbidden",
                "this operation is not allowed through the gateway".to_owned(),
            ),
            Self::Forbidden => (
                "access-denied",
                "Forbidden",
                "you are not allowed to perform this operation".to_owned(),
            ),
            Self::Unauthenticated(e) if e.is_unavailable() => (
                "authentication-unavailable",
                "Service unavailable",
                "authentication is temporarily unavailable".to_owned(),
            ),
            Self::Unauthenticated(e) => ("unauthenticated", "Unauthorized", e.to_string()),
            Self::UpstreamUnreachable(_) => (
                "upstream-unavailable",
                "Bad gateway",
                "the invoicing service is unavailable".to_owned(),
            ),
            Self::UpstreamTimeout => (
                "upstream-timeout",
                "Gateway timeout",
                "the invoicing service did not answer in time".to_owned(),
            ),
            Self::Internal(_) => (
                "internal-error",
                "Internal server error",
                "the gateway failed to handle the request".to_owned(),
            ),
        }
    }

    /// The response for this error: RFC 9457 problem JSON carrying the request id, plus
    /// `WWW-Authenticate` (RFC 6750) for a 401.
    pub(crate) fn to_response(&self, request_id: &str) -> Response<ResponseBody> {
        let status = self.status();
        let (kind, title, detail) = self.problem();
        let body = serde_json::json!({
            "type": format!("urn:invoiceguard:problem:{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "request_id": request_id,
        });
        let mut response = Response::new(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        );
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Self::Unauthenticated(error) = self
            && let Some(challenge) = challenge(error)
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The RFC 6750 challenge: bare when no token was offered, `invalid_token` when one was.
fn challenge(error: &AuthnError) -> Option<HeaderValue> {
    let value = match error {
        AuthnError::KeysUnavailable(_) => return None,
        AuthnError::MissingToken | AuthnError::NotBearer => {
            "Bearer realm=\"invoiceguard\"".to_owned()
        }
        other => format!(
            "Bearer realm=\"invoiceguard\", error=\"invalid_token\", error_description=\"{other}\""
        ),
    };
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let cases = [
            (GatewayError::BadRequest("x".into()), 400, Side::Client),
            (GatewayError::NoRoute, 403, Side::Client),
            (GatewayError::Forbidden, 403, Side::Client),
            (
                GatewayError::Unauthenticated(AuthnError::Expired),
                401,
                Side::Client,
            ),
            (
                GatewayError::Unauthenticated(AuthnError::KeysUnavailable("down".into())),
                503,
                Side::Upstream,
            ),
            (
                GatewayError::UpstreamUnreachable("refused".into()),
                502,
                Side::Upstream,
            ),
            (GatewayError::UpstreamTimeout, 504, Side::Upstream),
            (GatewayError::Internal("x".into()), 500, Side::Internal),
        ];
        for (error, status, side) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.side(), side, "{error}");
        }
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let bare = GatewayError::Unauthenticated(AuthnError::MissingToken).to_response("r1");
        assert_eq!(
            bare.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"invoiceguard\""
        );
        let expired = GatewayError::Unauthenticated(AuthnError::Expired).to_response("r1");
        let value = expired.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(value.contains("error=\"invalid_token\""), "{value}");
        assert_eq!(
            expired.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let forbidden = GatewayError::Forbidden.to_response("r1");
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
