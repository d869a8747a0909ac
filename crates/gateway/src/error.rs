//! Every way a request can be refused or fail, classified once: which side is at fault, which
//! status it becomes, and the one place it turns into a response.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use invoiceguard_authn::AuthnError;
use invoiceguard_policy::StepUp;

/// The body of every response the gateway sends: the upstream's stream, or a problem document.
pub(crate) type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// The body of every request sent to the upstream: the client's, held to its limits.
pub(crate) type RequestBody = BoxBody<Bytes, crate::body::BodyError>;

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
    /// The request body is larger than `limits.max_body_bytes` (the limit).
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(u64),
    /// The client paused its request body longer than `listen.body_timeout_ms`.
    #[error("request body timed out after {0} ms of silence")]
    BodyTimeout(u64),
    /// The client did not send its whole request body within `listen.body_deadline_ms`.
    #[error("request body timed out: not received whole within {0} ms")]
    BodyTooSlow(u64),
    /// The request names a host the gateway does not answer for (`listen.hosts`).
    #[error("misdirected request: host `{0}` is not served here")]
    MisdirectedRequest(String),
    /// The gateway is handling `limits.max_in_flight` requests already.
    #[error("too many requests in flight")]
    Overloaded,
    /// No route of `routes.toml` matches (default deny).
    #[error("no route matches")]
    NoRoute,
    /// The caller could not be authenticated.
    #[error("not authenticated: {0}")]
    Unauthenticated(#[from] AuthnError),
    /// The policies deny the request.
    #[error("denied by policy")]
    Forbidden,
    /// The policies deny the request until the user logs in again, more strongly or more
    /// recently (RFC 9470).
    #[error("stronger or fresher authentication required")]
    StepUpRequired(StepUp),
    /// A fact the decision needs (who created the invoice, its amount, the export quota) could
    /// not be had: the route fails closed.
    #[error("fact unavailable: {0}")]
    FactUnavailable(String),
    /// Too many requests, or too many failed authentications: try again after the duration.
    #[error("too many requests")]
    TooManyRequests(std::time::Duration, Throttle),
    /// The resource does not exist (the upstream's lookup said so).
    #[error("resource not found")]
    NotFound,
    /// No policy set is loaded (the folder had problems at start): nothing is decided, nothing
    /// forwarded, until a good set loads.
    #[error("no policy set is loaded")]
    PolicyUnavailable,
    /// A sensitive request's audit event cannot be made durable: it is not forwarded.
    #[error("audit unavailable: {0}")]
    AuditUnavailable(String),
    /// The upstream could not be reached or broke the connection.
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The gateway failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// A browser without a (valid, or strong enough) session is sent to log in at the IdP.
    #[error("sent to log in: {}", .0.cause)]
    LoginRequired(Box<LoginRedirect>),
    /// The policies deny the export until another person approves it (four eyes): the id of
    /// the export request recorded for it, once recorded.
    #[error("another person's approval required")]
    ApprovalRequired(Option<String>),
    /// A request authenticated by the session cookie came from another site or origin (CSRF).
    #[error("cross-site request refused: {0}")]
    CrossSite(&'static str),
    /// A pushed security event was refused (RFC 8935 section 2.4: its `err` code).
    #[error("security event refused: {0}")]
    SetRefused(invoiceguard_authn::SetError),
}

/// Where a browser is sent to log in, the cookies set on the way, and why.
#[derive(Debug)]
pub struct LoginRedirect {
    /// The IdP's authorization URL.
    pub(crate) location: String,
    /// `Set-Cookie` values (the login's `state`; the ended session's cookie cleared).
    pub(crate) cookies: Vec<String>,
    /// Why (for the audit event): no session, an expired one, a step-up.
    pub(crate) cause: String,
    /// Whether a policy asked for it (a step-up) rather than a missing session.
    pub(crate) step_up: bool,
}

/// Which limit a 429 comes from: a route's request rate, or the brute-force lockout (an address
/// or a subject past its failed-authentication limit). The audit event's detail says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// A route's `rate_limit`.
    Rate,
    /// `[limits] failed_auth_per_ip` / `failed_auth_per_subject`.
    Lockout,
}

impl GatewayError {
    /// The status the client receives.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) | Self::BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoRoute | Self::Forbidden | Self::CrossSite(_) | Self::ApprovalRequired(_) => {
                StatusCode::FORBIDDEN
            }
            Self::LoginRequired(_) => StatusCode::FOUND,
            Self::SetRefused(e) if e.code == "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            Self::SetRefused(e) if e.code == "authentication_failed" => StatusCode::UNAUTHORIZED,
            Self::SetRefused(_) => StatusCode::BAD_REQUEST,
            Self::StepUpRequired(_) => StatusCode::UNAUTHORIZED,
            Self::FactUnavailable(_) | Self::AuditUnavailable(_) | Self::PolicyUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthenticated(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated(e) if e.is_bad_request() => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Which side is at fault.
    pub(crate) fn side(&self) -> Side {
        match self {
            Self::BadRequest(_)
            | Self::PayloadTooLarge(_)
            | Self::BodyTimeout(_)
            | Self::BodyTooSlow(_)
            | Self::MisdirectedRequest(_)
            | Self::NoRoute
            | Self::Forbidden
            | Self::CrossSite(_)
            | Self::ApprovalRequired(_)
            | Self::LoginRequired(_)
            | Self::StepUpRequired(_) => Side::Client,
            Self::Unauthenticated(e) if e.is_unavailable() => Side::Upstream,
            Self::Unauthenticated(_) => Side::Client,
            Self::SetRefused(e) if e.code == "unavailable" => Side::Internal,
            Self::SetRefused(_) => Side::Client,
            Self::UpstreamUnreachable(_) | Self::UpstreamTimeout | Self::FactUnavailable(_) => {
                Side::Upstream
            }
            Self::NotFound | Self::TooManyRequests(..) => Side::Client,
            Self::Internal(_)
            | Self::AuditUnavailable(_)
            | Self::PolicyUnavailable
            | Self::Overloaded => Side::Internal,
        }
    }

    /// The audit reason code of the refusal.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::PayloadTooLarge(_) => "too_large",
            Self::BodyTimeout(_) | Self::BodyTooSlow(_) => "timeout",
            Self::MisdirectedRequest(_) => "misdirected",
            Self::Overloaded => "overloaded",
            Self::NoRoute => "no_route",
            Self::Unauthenticated(e) if e.is_unavailable() => "unavailable",
            Self::Unauthenticated(e) if e.is_bad_request() => "bad_request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden => "policy",
            Self::StepUpRequired(_) => "step_up",
            Self::FactUnavailable(_) => "unavailable",
            Self::AuditUnavailable(_) => "audit_unavailable",
            Self::PolicyUnavailable => "policy_unavailable",
            Self::NotFound => "not_found",
            Self::TooManyRequests(..) => "rate_limited",
            Self::UpstreamUnreachable(_) | Self::UpstreamTimeout => "upstream_failed",
            Self::Internal(_) => "internal",
            Self::LoginRequired(redirect) if redirect.step_up => "step_up",
            Self::LoginRequired(_) => "unauthenticated",
            Self::CrossSite(_) => "cross_site",
            Self::ApprovalRequired(_) => "approval_required",
            Self::SetRefused(e) if e.code == "unavailable" => "unavailable",
            Self::SetRefused(e) if e.code == "authentication_failed" => "unauthenticated",
            Self::SetRefused(_) => "bad_request",
        }
    }

    /// Detail for the audit event (never shown to the client beyond what `problem` says).
    pub(crate) fn audit_detail(&self) -> Option<String> {
        match self {
            Self::BadRequest(why) => Some(why.clone()),
            Self::PayloadTooLarge(_)
            | Self::BodyTimeout(_)
            | Self::BodyTooSlow(_)
            | Self::MisdirectedRequest(_) => Some(self.to_string()),
            Self::Overloaded => None,
            Self::Unauthenticated(e) => Some(e.reason().to_owned()),
            Self::UpstreamUnreachable(why)
            | Self::Internal(why)
            | Self::FactUnavailable(why)
            | Self::AuditUnavailable(why) => Some(why.clone()),
            Self::NotFound => None,
            Self::TooManyRequests(wait, Throttle::Rate) => {
                Some(format!("retry after {}s", retry_after_s(*wait)))
            }
            Self::TooManyRequests(wait, Throttle::Lockout) => Some(format!(
                "locked out after failed authentications; retry after {}s",
                retry_after_s(*wait)
            )),
            Self::UpstreamTimeout => Some("timeout".to_owned()),
            Self::NoRoute | Self::Forbidden | Self::PolicyUnavailable => None,
            Self::LoginRequired(redirect) => Some(format!("sent to log in: {}", redirect.cause)),
            Self::CrossSite(why) => Some((*why).to_owned()),
            Self::ApprovalRequired(Some(id)) => Some(format!(
                "another person's approval required: export request {id}"
            )),
            Self::ApprovalRequired(None) => Some("another person's approval required".to_owned()),
            Self::SetRefused(error) => Some(error.to_string()),
            Self::StepUpRequired(step_up) => Some(match (step_up.mfa, step_up.max_age_s) {
                (true, Some(age)) => format!("mfa and a login within {age}s required"),
                (true, None) => "mfa required".to_owned(),
                (false, Some(age)) => format!("a login within {age}s required"),
                (false, None) => "stronger authentication required".to_owned(),
            }),
        }
    }

    /// The problem type, its title (from the status) and the detail the client may see: enough
    /// to act on, nothing about the policies or the upstream's internals.
    fn problem(&self) -> (&'static str, &'static str, String) {
        let (kind, detail) = self.kind_and_detail();
        (kind, title(self.status()), detail)
    }

    /// The problem type and the detail the client may see.
    fn kind_and_detail(&self) -> (&'static str, String) {
        match self {
            Self::BadRequest(why) => ("bad-request", why.clone()),
            Self::PayloadTooLarge(limit) => (
                "payload-too-large",
                format!("the request body is larger than {limit} bytes"),
            ),
            Self::MisdirectedRequest(_) => (
                "misdirected-request",
                "this gateway does not answer for the requested host".to_owned(),
            ),
            Self::BodyTimeout(_) | Self::BodyTooSlow(_) => (
                "request-timeout",
                "the request body was not sent in time".to_owned(),
            ),
            Self::Overloaded => (
                "overloaded",
                "the gateway is busy; try again shortly".to_owned(),
            ),
            Self::NoRoute => (
                "access-denied",
                "this operation is not allowed through the gateway".to_owned(),
            ),
            Self::Forbidden => (
                "access-denied",
                "you are not allowed to perform this operation".to_owned(),
            ),
            Self::Unauthenticated(e) if e.is_unavailable() => (
                "authentication-unavailable",
                "authentication is temporarily unavailable".to_owned(),
            ),
            Self::Unauthenticated(e) if e.is_bad_request() => ("bad-request", e.to_string()),
            Self::Unauthenticated(e) if e.is_missing() => {
                ("unauthenticated", "authentication is required".to_owned())
            }
            Self::Unauthenticated(_) => ("unauthenticated", INVALID_CREDENTIALS.to_owned()),
            Self::StepUpRequired(_) => (
                "step-up-required",
                "log in again with stronger or more recent authentication".to_owned(),
            ),
            Self::FactUnavailable(_) => (
                "decision-unavailable",
                "the facts this decision needs are temporarily unavailable".to_owned(),
            ),
            Self::NotFound => ("not-found", "no such resource".to_owned()),
            Self::PolicyUnavailable => (
                "decision-unavailable",
                "access decisions are temporarily unavailable".to_owned(),
            ),
            Self::AuditUnavailable(_) => (
                "audit-unavailable",
                "this operation cannot be recorded right now, so it is not performed".to_owned(),
            ),
            Self::TooManyRequests(..) => (
                "rate-limited",
                "too many requests or failed logins; try again later".to_owned(),
            ),
            Self::UpstreamUnreachable(_) => (
                "upstream-unavailable",
                "the invoicing service is unavailable".to_owned(),
            ),
            Self::UpstreamTimeout => (
                "upstream-timeout",
                "the invoicing service did not answer in time".to_owned(),
            ),
            Self::Internal(_) => (
                "internal-error",
                "the gateway failed to handle the request".to_owned(),
            ),
            Self::LoginRequired(_) => ("login-required", "log in to continue".to_owned()),
            Self::ApprovalRequired(_) => (
                "approval-required",
                "this export needs another person's approval; ask an approver to approve the export request, then send the same export again".to_owned(),
            ),
            Self::CrossSite(_) => (
                "cross-site-request",
                "this request did not come from the invoicing application's own pages".to_owned(),
            ),
            Self::SetRefused(error) => ("security-event-refused", error.to_string()),
        }
    }

    /// The response for this error: RFC 9457 problem JSON carrying the request id, plus
    /// `WWW-Authenticate` for a 401 (RFC 6750; RFC 9470 for step-up, asking for `mfa_acr`).
    pub(crate) fn to_response(
        &self,
        request_id: &str,
        mfa_acr: &[String],
    ) -> Response<ResponseBody> {
        let status = self.status();
        let (kind, title, detail) = self.problem();
        let mut body = serde_json::json!({
            "type": format!("urn:invoiceguard:problem:{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "request_id": request_id,
        });
        if let Self::SetRefused(error) = self {
            // RFC 8935 section 2.4's error members, beside the problem's.
            body["err"] = serde_json::json!(error.code);
            body["description"] = serde_json::json!(error.description);
        }
        if let Self::ApprovalRequired(Some(id)) = self {
            body["approval_request"] = serde_json::json!(id);
            body["approval_url"] = serde_json::json!(format!("/.invoiceguard/approvals/{id}"));
        }
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
        if let Self::TooManyRequests(wait, _) = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_s(*wait).to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        // Every 503 is temporary, and so is a key the gateway could not find yet (a rotation
        // under way): the client may try again in a second.
        let unknown_key = matches!(self, Self::Unauthenticated(AuthnError::UnknownSigningKey));
        if status == StatusCode::SERVICE_UNAVAILABLE || unknown_key {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::LoginRequired(redirect) = self {
            if let Ok(location) = HeaderValue::from_str(&redirect.location) {
                headers.insert(header::LOCATION, location);
            }
            for cookie in &redirect.cookies {
                if let Ok(cookie) = HeaderValue::from_str(cookie) {
                    headers.append(header::SET_COOKIE, cookie);
                }
            }
        }
        if matches!(self, Self::BodyTimeout(_) | Self::BodyTooSlow(_)) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let challenge = match self {
            Self::Unauthenticated(error) if error.is_bad_request() => None,
            Self::Unauthenticated(error) => challenge(error),
            Self::StepUpRequired(step_up) => step_up_challenge(step_up, mfa_acr),
            _ => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// Whole seconds to wait, at least 1.
fn retry_after_s(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.as_secs() == 0))
}

/// What a client is told about any bad credential; the audit event has the precise reason.
const INVALID_CREDENTIALS: &str = "the access token is not valid";

/// The RFC 6750 challenge: bare when no credentials were offered, `invalid_token` when some were.
fn challenge(error: &AuthnError) -> Option<HeaderValue> {
    let value = if error.is_unavailable() {
        return None;
    } else if error.is_missing() {
        "Bearer realm=\"invoiceguard\"".to_owned()
    } else {
        format!(
            "Bearer realm=\"invoiceguard\", error=\"invalid_token\", error_description=\"{INVALID_CREDENTIALS}\""
        )
    };
    HeaderValue::from_str(&value).ok()
}

/// The RFC 9470 challenge: `insufficient_user_authentication`, with the `acr_values` that count
/// as multi-factor and the `max_age` the login must not exceed.
fn step_up_challenge(step_up: &StepUp, mfa_acr: &[String]) -> Option<HeaderValue> {
    let mut value = "Bearer realm=\"invoiceguard\", error=\"insufficient_user_authentication\", \
                     error_description=\"a stronger or more recent login is required\""
        .to_owned();
    if step_up.mfa && !mfa_acr.is_empty() {
        value.push_str(&format!(", acr_values=\"{}\"", mfa_acr.join(" ")));
    }
    if let Some(age) = step_up.max_age_s {
        value.push_str(&format!(", max_age=\"{age}\""));
    }
    HeaderValue::from_str(&value).ok()
}

/// A problem's title: its status, in words.
fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        302 => "Found",
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        408 => "Request timeout",
        413 => "Content too large",
        421 => "Misdirected request",
        429 => "Too many requests",
        502 => "Bad gateway",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        _ => "Internal server error",
    }
}

/// The error and its causes, for the audit detail.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
