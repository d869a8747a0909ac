//! Validation of one bearer JWT against a known signing key.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::AuthnError;
use crate::keys::SigningKey;

/// What a token must say, for one trusted issuer.
pub(crate) struct Expectations<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a [String],
    pub(crate) leeway_s: u64,
}

/// Reads the token's header without trusting it: the key id it names, and its `alg`. A header
/// that lists critical extensions (`crit`) is refused, as RFC 7515 section 4.1.11 requires of a
/// recipient that understands none. The other key-locating parameters (`jku`, `x5u`, `jwk`,
/// `x5c`, and a `kid` that looks like a URL) are never followed nor used: the key comes only
/// from the issuer's published set, looked up by `kid` as an opaque name.
pub(crate) fn header(token: &str) -> Result<Header, AuthnError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthnError::Malformed)?;
    if header.crit.is_some() {
        return Err(AuthnError::UnsupportedCritical);
    }
    Ok(header)
}

/// Whether a failure of [`verify`] came after the signature was verified, in a check that is not
/// about time (audience, issuer, claims): the token then proves its subject. An expired or
/// not-yet-valid token of a real person is no guess, and is left out.
pub(crate) fn after_signature(error: &AuthnError) -> bool {
    matches!(
        error,
        AuthnError::WrongAudience | AuthnError::WrongIssuer | AuthnError::BadClaim(_)
    )
}

/// What a token claims, read once before it is verified: the issuer, to pick its keys, and the
/// subject, named when a failure after the signature proves it (at most 256 bytes, or none).
pub(crate) struct Claimed {
    pub(crate) issuer: String,
    pub(crate) subject: Option<String>,
}

/// Reads the claims the issuer's keys are picked by, without trusting them.
pub(crate) fn claimed(token: &str) -> Result<Claimed, AuthnError> {
    #[derive(Deserialize)]
    struct Unverified {
        iss: Option<String>,
        sub: Option<String>,
    }
    let claims: Unverified = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| AuthnError::Malformed)?;
    Ok(Claimed {
        issuer: claims
            .iss
            .ok_or_else(|| AuthnError::BadClaim("iss".to_owned()))?,
        subject: claims.sub.filter(|sub| sub.len() <= 256),
    })
}

/// Checks the `typ` header when one is required (RFC 9068: `at+jwt`).
pub(crate) fn check_type(header: &Header, required: Option<&str>) -> Result<(), AuthnError> {
    let Some(required) = required else {
        return Ok(());
    };
    let typ = header.typ.as_deref().unwrap_or_default();
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    if typ.eq_ignore_ascii_case(required) {
        Ok(())
    } else {
        Err(AuthnError::WrongType)
    }
}

/// Verifies the signature with `key` (and only with the algorithm the key is bound to) and checks
/// `iss`, `aud`, `exp`, `nbf` and `iat`. Returns the token's claims.
pub(crate) fn verify(
    token: &str,
    header: &Header,
    key: &SigningKey,
    expect: &Expectations<'_>,
    now: u64,
) -> Result<Map<String, Value>, AuthnError> {
    if header.alg != key.algorithm {
        return Err(AuthnError::AlgorithmMismatch(format!("{:?}", header.alg)));
    }
    let mut validation = Validation::new(key.algorithm);
    validation.set_issuer(&[expect.issuer]);
    validation.set_audience(expect.audience);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = expect.leeway_s;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
        .map_err(|e| classify(e.kind()))?;
    match data.claims.get("iat") {
        None => {}
        Some(iat) => match iat.as_u64() {
            Some(iat) if iat <= now + expect.leeway_s => {}
            Some(_) => return Err(AuthnError::NotYetValid),
            None => return Err(AuthnError::BadClaim("iat".to_owned())),
        },
    }
    Ok(data.claims)
}

pub(crate) fn classify(kind: &ErrorKind) -> AuthnError {
    match kind {
        ErrorKind::InvalidSignature => AuthnError::BadSignature,
        ErrorKind::ExpiredSignature => AuthnError::Expired,
        ErrorKind::ImmatureSignature => AuthnError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthnError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthnError::WrongAudience,
        ErrorKind::InvalidAlgorithm => AuthnError::AlgorithmMismatch("unexpected".to_owned()),
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            AuthnError::BadClaim(claim.clone())
        }
        _ => AuthnError::Malformed,
    }
}
