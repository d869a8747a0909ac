//! Why a caller could not be authenticated.

/// A failed authentication. The `*Unavailable` variants mean the IdP could not be asked, so
/// nobody can be authenticated (503); every other variant is the caller's (401).
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// No credentials at all.
    #[error("no bearer token")]
    MissingToken,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("authorization header is not a bearer token")]
    NotBearer,
    /// The token is not a well-formed JWT (nor an opaque token this gateway can introspect).
    #[error("token is not well formed")]
    Malformed,
    /// The token is longer than allowed.
    #[error("token is too large")]
    TooLarge,
    /// The token's protected header lists extensions in `crit` (RFC 7515 section 4.1.11): the
    /// gateway understands none, so it must refuse the token.
    #[error("token header lists critical extensions")]
    UnsupportedCritical,
    /// The request carries more than one credential (a bearer token and an API key, or either
    /// with a client certificate of an integration account): which one it means is ambiguous.
    #[error("more than one credential: {0}")]
    MoreThanOneCredential(&'static str),
    /// The token's signature verified, so it names its subject for certain, but it failed a
    /// later check (audience, a required claim): a failure that counts against the subject.
    #[error("{error}")]
    Proven {
        /// The verified subject.
        subject: String,
        /// The check it failed.
        error: Box<AuthnError>,
    },
    /// The token's `typ` header is not the one required.
    #[error("token is not an access token")]
    WrongType,
    /// The token names no key id, or one the IdP does not publish.
    #[error("token is signed with an unknown key")]
    UnknownSigningKey,
    /// The token's `alg` is not the algorithm of the key it names.
    #[error("token algorithm does not match its signing key")]
    AlgorithmMismatch(String),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not a trusted issuer.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("token audience is not this API")]
    WrongAudience,
    /// A claim the gateway requires is missing or has the wrong type.
    #[error("token claim is missing or invalid")]
    BadClaim(String),
    /// Introspection says the opaque token is not active.
    #[error("token is not active")]
    Inactive,
    /// The API key matches no integration account.
    #[error("api key is not valid")]
    BadApiKey,
    /// The subject is revoked (a leaver, a compromised integration).
    #[error("credentials are revoked")]
    Revoked,
    /// The IdP reported a security event about the subject (a credential change, sessions
    /// revoked, a compromise) after this token was issued: a fresh login is required.
    #[error("the identity provider ended this login (a security event); log in again")]
    EndedByIdp,
    /// A client certificate chained to the client CA but matches no integration account.
    #[error("client certificate is not an integration account")]
    UnknownClientCertificate,
    /// The IdP's signing keys are not available (discovery or JWKS failed and none are cached).
    #[error("identity provider keys are unavailable: {0}")]
    KeysUnavailable(String),
    /// The introspection endpoint could not be asked.
    #[error("token introspection is unavailable: {0}")]
    IntrospectionUnavailable(String),
    /// A browser login did not complete: the IdP refused the code, or its ID token failed a
    /// check (nonce, `auth_time`), or the login's `state` is unknown, used or not this browser's.
    #[error("login failed: {0}")]
    LoginFailed(String),
    /// The browser's session cookie names no live session (never started, ended, or expired
    /// and forgotten).
    #[error("no session")]
    NoSession,
    /// The session passed its idle or absolute timeout.
    #[error("session expired ({0} timeout)")]
    SessionExpired(&'static str),
    /// The session is used from another client than the one it started on, and the gateway is
    /// configured to end it then.
    #[error("session used from another device")]
    DeviceChanged,
    /// Sessions cannot be read or started: the state store does not answer, or the system's
    /// random generator failed.
    #[error("sessions are unavailable: {0}")]
    SessionsUnavailable(String),
    /// The authenticator could not be set up.
    #[error("{0}")]
    Setup(String),
}

impl AuthnError {
    /// Whether the failure is the IdP's side rather than the caller's.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::KeysUnavailable(_)
                | Self::IntrospectionUnavailable(_)
                | Self::SessionsUnavailable(_)
                | Self::Setup(_)
        )
    }

    /// Whether the caller offered no credentials (the challenge then carries no error code).
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            Self::MissingToken | Self::NotBearer | Self::NoSession | Self::SessionExpired(_)
        )
    }

    /// Whether the request is malformed rather than its credential invalid (400, not 401).
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Self::MoreThanOneCredential(_))
    }

    /// Whether the failure counts toward lockouts (per address, and per subject when it proves
    /// one): a credential that is forged, guessed or misused. A token whose signature cannot be
    /// checked for lack of its key (a key rotated in or retired), a real token past its time, a
    /// missing credential or an IdP that cannot be asked prove nothing about guessing, so they
    /// never lock anyone out.
    pub fn counts_toward_lockout(&self) -> bool {
        let error = match self {
            Self::Proven { error, .. } => error,
            other => other,
        };
        !(error.is_missing()
            || error.is_unavailable()
            || matches!(
                error,
                Self::UnknownSigningKey
                    | Self::Expired
                    | Self::NotYetValid
                    | Self::DeviceChanged
                    | Self::EndedByIdp
                    | Self::LoginFailed(_)
            ))
    }

    /// The subject a failed credential proves (its signature verified): only such failures
    /// count against a subject, so that nobody can lock out another person by naming them.
    pub fn proven_subject(&self) -> Option<&str> {
        match self {
            Self::Proven { subject, .. } => Some(subject),
            _ => None,
        }
    }

    /// A short, stable reason code for audit events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::NotBearer => "not_bearer",
            Self::Malformed => "malformed_token",
            Self::TooLarge => "token_too_large",
            Self::WrongType => "wrong_token_type",
            Self::UnsupportedCritical => "unsupported_crit",
            Self::MoreThanOneCredential(_) => "more_than_one_credential",
            Self::Proven { error, .. } => error.reason(),
            Self::UnknownSigningKey => "unknown_key",
            Self::AlgorithmMismatch(_) => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::BadClaim(_) => "bad_claim",
            Self::Inactive => "inactive_token",
            Self::BadApiKey => "bad_api_key",
            Self::Revoked => "revoked",
            Self::EndedByIdp => "ended_by_security_event",
            Self::UnknownClientCertificate => "unknown_client_certificate",
            Self::KeysUnavailable(_) => "keys_unavailable",
            Self::IntrospectionUnavailable(_) => "introspection_unavailable",
            Self::Setup(_) => "setup_failed",
            Self::LoginFailed(_) => "login_failed",
            Self::NoSession => "no_session",
            Self::SessionExpired(_) => "session_expired",
            Self::DeviceChanged => "device_changed",
            Self::SessionsUnavailable(_) => "sessions_unavailable",
        }
    }
}
