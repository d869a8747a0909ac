//! Validation of one bearer JWT against a known signing key.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde_json::{Map, Value};

use crate::config::AuthnConfig;
use crate::error::AuthnError;
use crate::keys::SigningKey;

/// Tokens longer than this are refused before any parsing.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Reads the token's header without trusting it: the key id it names, and its `alg`.
pub(crate) fn header(token: &str) -> Result<Header, AuthnError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthnError::Malformed);
    }
    jsonwebtoken::decode_header(token).map_err(|_| AuthnError::Malformed)
}

/// Verifies the signature with `key` (and only with the algorithm the key is bound to) and checks
/// `iss`, `aud`, `exp` and `nbf`. Returns the token's claims.
pub(crate) fn verify(
    token: &str,
    header: &Header,
    key: &SigningKey,
    config: &AuthnConfig,
) -> Result<Map<String, Value>, AuthnError> {
    if header.alg != key.algorithm {
        return Err(AuthnError::AlgorithmMismatch(format!("{:?}", header.alg)));
    }
    let mut validation = Validation::new(key.algorithm);
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&config.audience);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = config.leeway_s;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
        .map_err(|e| classify(e.kind()))?;
    Ok(data.claims)
}

fn classify(kind: &ErrorKind) -> AuthnError {
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
