//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never in the product): the
//! parts of authentication that read a client's bytes — the `Authorization` header and a token's
//! header and claims before its signature is checked, and the claims a verified token carries.

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::authenticator::bearer_token;
use crate::{AuthMethod, AuthnConfig, AuthnError, Principal, principal, token};

/// What the authenticator reads of a bearer token before verifying it: the token, its header
/// (the `typ` checked as `at+jwt`), the issuer it claims, and the subject a failure after the
/// signature would name.
pub fn read_unverified(authorization: &[u8]) -> Result<(String, Option<String>), AuthnError> {
    let value = HeaderValue::from_bytes(authorization).map_err(|_| AuthnError::NotBearer)?;
    let token = bearer_token(&value)?;
    let jwt = token::Jwt::parse(token)?;
    token::check_type(&jwt.header, Some("at+jwt"))?;
    let claimed = token::claimed(&jwt)?;
    if let Some(subject) = &claimed.subject {
        assert!(subject.len() <= 256, "an overlong claimed subject was kept");
    }
    Ok((claimed.issuer, claimed.subject))
}

/// The principal that claims make once verified, with the given roles claims and MFA values.
/// Every name it holds is safe to put in a header (no control characters, no list separators).
pub fn principal_from_claims(claims: &[u8]) -> Result<Principal, AuthnError> {
    let claims: Map<String, Value> =
        serde_json::from_slice(claims).map_err(|_| AuthnError::Malformed)?;
    let config: AuthnConfig = serde_json::from_value(serde_json::json!({
        "issuer": "https://idp.example",
        "audience": ["urn:invoiceguard:invoicing-api"],
        "roles_claims": ["roles", "groups"],
        "mfa_acr": ["urn:invoiceguard:acr:mfa"],
    }))
    .map_err(|_| AuthnError::Malformed)?;
    let principal = Principal::from_claims(&claims, &config, None, AuthMethod::Jwt)?;
    assert!(principal::is_safe_name(&principal.id, false));
    for name in principal.roles.iter().chain(&principal.scopes) {
        assert!(principal::is_safe_name(name, true), "unsafe name {name:?}");
    }
    Ok(principal)
}
