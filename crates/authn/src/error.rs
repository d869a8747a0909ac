//! Why a caller could not be authenticated.

/// A failed authentication. Every variant but [`AuthnError::KeysUnavailable`] is the caller's fault
/// (401); that one means the IdP's keys could not be had, so nobody can be authenticated (503).
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// No `Authorization` header.
    #[error("no bearer token")]
    MissingToken,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("authorization header is not a bearer token")]
    NotBearer,
    /// The token is not a well-formed JWT.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// The token names no key id, or one the IdP does not publish.
    #[error("token is signed with an unknown key")]
    UnknownSigningKey,
    /// The token's `alg` is not the algorithm of the key it names.
    #[error("token algorithm `{0}` does not match its signing key")]
    AlgorithmMismatch(String),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("token audience is not this API")]
    WrongAudience,
    /// A claim the gateway requires is missing or has the wrong type.
    #[error("token claim `{0}` is missing or invalid")]
    BadClaim(String),
    /// The IdP's signing keys are not available (discovery or JWKS failed and none are cached).
    #[error("identity provider keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthnError {
    /// Whether the failure is the IdP's side rather than the caller's.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable(_))
    }

    /// A short, stable reason code for audit events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::NotBearer => "not_bearer",
            Self::Malformed => "malformed_token",
            Self::UnknownSigningKey => "unknown_key",
            Self::AlgorithmMismatch(_) => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::BadClaim(_) => "bad_claim",
            Self::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}
