//! Validation of one JWT (a bearer token, an ID or logout token, a Security Event Token) against
//! a known signing key: the token split and decoded once, its signature checked with the key
//! parsed when the key set was loaded, its claims checked.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use serde_json::{Map, Value};

use crate::error::AuthnError;
use crate::keys::SigningKey;

/// A compact JWS read once, nothing of it trusted yet: its header, its claims, and the bytes its
/// signature covers. The header names a key id and an algorithm; the key comes only from the
/// issuer's published set, looked up by `kid` as an opaque name — `jku`, `x5u`, `jwk`, `x5c` and
/// a `kid` that looks like a URL are never followed nor used.
pub(crate) struct Jwt<'a> {
    pub(crate) header: Header,
    pub(crate) claims: Map<String, Value>,
    /// `header.payload`, what the signature is over.
    signing_input: &'a [u8],
    /// The signature, decoded.
    signature: Vec<u8>,
}

impl<'a> Jwt<'a> {
    /// Splits and decodes the token: exactly three base64url parts without padding, a header
    /// that is a JSON object with a known `alg` and no `crit` (RFC 7515 section 4.1.11 requires a
    /// recipient that understands no extension to refuse them), claims that are a JSON object, a signature.
    pub(crate) fn parse(token: &'a str) -> Result<Self, AuthnError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthnError::Malformed);
        };
        let header: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| AuthnError::Malformed)?;
        if header.crit.is_some() {
            return Err(AuthnError::UnsupportedCritical);
        }
        let claims: Map<String, Value> =
            serde_json::from_slice(&decode(payload)?).map_err(|_| AuthnError::Malformed)?;
        let signed = token.len() - signature.len() - 1;
        Ok(Self {
            header,
            claims,
            signing_input: &token.as_bytes()[..signed],
            signature: decode(signature)?,
        })
    }

    /// Verifies the signature with `key`, and only with the algorithm the key is bound to, then
    /// checks the claims as `checks` asks. Returns the claims.
    pub(crate) fn verify(
        self,
        key: &SigningKey,
        checks: &Checks<'_>,
        now: u64,
    ) -> Result<Map<String, Value>, AuthnError> {
        if self.header.alg != key.algorithm {
            return Err(AuthnError::AlgorithmMismatch(format!(
                "{:?}",
                self.header.alg
            )));
        }
        if !key.verifies(self.signing_input, &self.signature) {
            return Err(AuthnError::BadSignature);
        }
        checks.check(&self.claims, now)?;
        Ok(self.claims)
    }
}

fn decode(part: &str) -> Result<Vec<u8>, AuthnError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthnError::Malformed)
}

/// What a token's registered claims must say (RFC 7519 section 4.1).
pub(crate) struct Checks<'a> {
    /// `iss` must be this issuer.
    pub(crate) issuer: &'a str,
    /// `aud` (a string, or an array of them) must name one of these.
    pub(crate) audience: &'a [String],
    /// Claims that must be present with the right type, among `exp`, `nbf`, `iss`, `aud`, `sub`.
    pub(crate) required: &'a [&'a str],
    /// Whether `exp` is checked (when present).
    pub(crate) exp: bool,
    /// Whether `nbf` is checked (when present).
    pub(crate) nbf: bool,
    /// Whether an `iat` ahead of now is refused here (it is a number whenever present).
    pub(crate) iat: bool,
    /// Seconds of clock skew allowed either way.
    pub(crate) leeway_s: u64,
}

/// A registered claim as read: absent, present with the wrong type, or its value.
enum Read<T> {
    Absent,
    WrongType,
    Value(T),
}

impl<T> Read<T> {
    fn present(&self) -> bool {
        matches!(self, Self::Value(_))
    }
}

/// A NumericDate (RFC 7519 section 2): a non-negative number of seconds, a fraction rounded.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Read<u64> {
    match claims.get(name) {
        None | Some(Value::Null) => Read::Absent,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(seconds), _) => Read::Value(seconds),
            (None, Some(f)) => rounded(f).map_or(Read::WrongType, Read::Value),
            _ => Read::WrongType,
        },
        Some(_) => Read::WrongType,
    }
}

/// A fractional NumericDate rounded to whole seconds, when it is one (the range checked before
/// the cast).
fn rounded(seconds: f64) -> Option<u64> {
    (seconds.is_finite() && seconds >= 0.0 && seconds < u64::MAX as f64)
        .then(|| seconds.round() as u64)
}

/// A StringOrURI claim that may also be an array of them (`aud`; `iss` read the same way).
fn names<'c>(claims: &'c Map<String, Value>, name: &str) -> Read<Vec<&'c str>> {
    match claims.get(name) {
        None | Some(Value::Null) => Read::Absent,
        Some(Value::String(one)) => Read::Value(vec![one.as_str()]),
        Some(Value::Array(many)) => many
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .map_or(Read::WrongType, Read::Value),
        Some(_) => Read::WrongType,
    }
}

impl Checks<'_> {
    /// The checks jsonwebtoken's `Validation` made, in its order: required claims present with
    /// their types, `exp` (passed more than the leeway ago: expired) and `nbf` (more than the
    /// leeway ahead: not yet valid), `iss`, `aud`; then `iat` when present (a number and, when
    /// asked, not ahead by more than the leeway).
    fn check(&self, claims: &Map<String, Value>, now: u64) -> Result<(), AuthnError> {
        let bad = |claim: &str| AuthnError::BadClaim(claim.to_owned());
        let exp = numeric_date(claims, "exp");
        let nbf = numeric_date(claims, "nbf");
        let iss = names(claims, "iss");
        let aud = names(claims, "aud");
        for required in self.required {
            let present = match *required {
                "exp" => exp.present(),
                "nbf" => nbf.present(),
                "iss" => iss.present(),
                "aud" => aud.present(),
                "sub" => matches!(claims.get("sub"), Some(Value::String(_))),
                _ => true,
            };
            if !present {
                return Err(bad(required));
            }
        }
        if self.exp {
            match exp {
                Read::WrongType => return Err(bad("exp")),
                Read::Value(exp) if exp < now.saturating_sub(self.leeway_s) => {
                    return Err(AuthnError::Expired);
                }
                _ => {}
            }
        }
        if self.nbf {
            match nbf {
                Read::WrongType => return Err(bad("nbf")),
                Read::Value(nbf) if nbf > now + self.leeway_s => {
                    return Err(AuthnError::NotYetValid);
                }
                _ => {}
            }
        }
        match iss {
            Read::Value(iss) if !iss.contains(&self.issuer) => return Err(AuthnError::WrongIssuer),
            Read::WrongType => return Err(AuthnError::WrongIssuer),
            _ => {}
        }
        match aud {
            Read::Value(aud) if !aud.iter().any(|a| self.audience.iter().any(|w| w == a)) => {
                return Err(AuthnError::WrongAudience);
            }
            Read::WrongType => return Err(AuthnError::WrongAudience),
            _ => {}
        }
        match claims.get("iat") {
            None => Ok(()),
            Some(iat) => match iat.as_u64() {
                Some(iat) if !self.iat || iat <= now + self.leeway_s => Ok(()),
                Some(_) => Err(AuthnError::NotYetValid),
                None => Err(bad("iat")),
            },
        }
    }
}

/// Whether a failure of [`Jwt::verify`] came after the signature was verified, in a check that
/// is not about time (audience, issuer, claims): the token then proves its subject. An expired or
/// not-yet-valid token of a real person is no guess, and is left out.
pub(crate) fn after_signature(error: &AuthnError) -> bool {
    matches!(
        error,
        AuthnError::WrongAudience | AuthnError::WrongIssuer | AuthnError::BadClaim(_)
    )
}

/// What a token claims, read before it is verified: the issuer, to pick its keys, and the
/// subject, named when a failure after the signature proves it (at most 256 bytes, or none).
pub(crate) struct Claimed {
    pub(crate) issuer: String,
    pub(crate) subject: Option<String>,
}

/// Reads the claims the issuer's keys are picked by, without trusting them: `iss` must be a
/// string, `sub` a string when present.
pub(crate) fn claimed(jwt: &Jwt<'_>) -> Result<Claimed, AuthnError> {
    let issuer = match jwt.claims.get("iss") {
        None | Some(Value::Null) => return Err(AuthnError::BadClaim("iss".to_owned())),
        Some(Value::String(iss)) => iss.clone(),
        Some(_) => return Err(AuthnError::Malformed),
    };
    let subject = match jwt.claims.get("sub") {
        None | Some(Value::Null) => None,
        Some(Value::String(sub)) => Some(sub).filter(|sub| sub.len() <= 256).cloned(),
        Some(_) => return Err(AuthnError::Malformed),
    };
    Ok(Claimed { issuer, subject })
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

#[cfg(test)]
mod tests;
