//! The normalize phase: the request's one canonical path (ambiguous ones refused,
//! `canonical_path.rs`), the host it names (`listen.hosts`), its declared size, and the reason a
//! break-glass account states.

use http::{Request, header};

use crate::canonical_path::bare_host;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::headers::BREAK_GLASS;

/// The longest break-glass reason accepted.
const MAX_BREAK_GLASS_REASON: usize = 256;

pub(super) fn phase<B>(
    gateway: &Gateway,
    request: &Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<(), GatewayError> {
    let path = crate::canonical_path::request(
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
    )
    .map_err(|refused| GatewayError::BadRequest(refused.to_string()))?;
    ctx.path = Some(path);
    check_host(&gateway.hosts, request)?;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    let limit = gateway.limits.max_body_bytes;
    if declared.is_some_and(|length| length > limit) {
        return Err(GatewayError::PayloadTooLarge(limit));
    }
    ctx.break_glass = break_glass_reason(request.headers())?;
    Ok(())
}

/// 421 unless the request names one of `listen.hosts` (any host when none is listed).
fn check_host<B>(hosts: &[String], request: &Request<B>) -> Result<(), GatewayError> {
    if hosts.is_empty() {
        return Ok(());
    }
    let named = request
        .uri()
        .authority()
        .map(|authority| authority.host().to_owned())
        .or_else(|| {
            let value = request.headers().get(header::HOST)?.to_str().ok()?;
            let authority = value.parse::<http::uri::Authority>().ok()?;
            Some(authority.host().to_owned())
        })
        .unwrap_or_default();
    let host = bare_host(&named);
    if hosts.iter().any(|own| own.eq_ignore_ascii_case(host)) {
        Ok(())
    } else {
        let shown: String = named.chars().take(255).collect();
        Err(GatewayError::MisdirectedRequest(shown))
    }
}

/// The request's break-glass reason: printable, at most 256 bytes, or a bad request.
fn break_glass_reason(headers: &http::HeaderMap) -> Result<Option<String>, GatewayError> {
    let Some(value) = headers.get(BREAK_GLASS) else {
        return Ok(None);
    };
    let reason = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|r| {
            !r.is_empty() && r.len() <= MAX_BREAK_GLASS_REASON && !r.chars().any(char::is_control)
        })
        .ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "`{BREAK_GLASS}` must be printable text of 1 to {MAX_BREAK_GLASS_REASON} bytes"
            ))
        })?;
    Ok(Some(reason.to_owned()))
}
