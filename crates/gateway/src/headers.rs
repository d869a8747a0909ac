//! The header names the gateway reads and sets: the verified identity it passes on (every
//! `x-invoiceguard-*` header is the gateway's own), the request id, and the break-glass reason.
//! One place, shared by the phases and the upstream call.

/// Every header with this prefix is the gateway's to set; client-sent ones are removed.
pub(crate) const IDENTITY_PREFIX: &str = "x-invoiceguard-";
/// The verified subject (`sub`).
pub(crate) const SUBJECT: &str = "x-invoiceguard-subject";
/// `user` or `service_account`.
pub(crate) const PRINCIPAL_TYPE: &str = "x-invoiceguard-principal-type";
/// Comma-separated roles.
pub(crate) const ROLES: &str = "x-invoiceguard-roles";
/// Space-separated scopes.
pub(crate) const SCOPES: &str = "x-invoiceguard-scopes";
/// The OAuth client id.
pub(crate) const CLIENT_ID: &str = "x-invoiceguard-client-id";
/// `true` when the login was multi-factor.
pub(crate) const MFA: &str = "x-invoiceguard-mfa";
/// The request id, on the upstream request and on the response.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// A break-glass account's reason for its request: recorded, never forwarded.
pub(crate) const BREAK_GLASS: &str = "x-break-glass-reason";

/// The headers the gateway sets, as names made once (not checked again for every request).
pub(crate) mod names {
    use http::HeaderName;

    pub(crate) static SUBJECT: HeaderName = HeaderName::from_static(super::SUBJECT);
    pub(crate) static PRINCIPAL_TYPE: HeaderName = HeaderName::from_static(super::PRINCIPAL_TYPE);
    pub(crate) static ROLES: HeaderName = HeaderName::from_static(super::ROLES);
    pub(crate) static SCOPES: HeaderName = HeaderName::from_static(super::SCOPES);
    pub(crate) static CLIENT_ID: HeaderName = HeaderName::from_static(super::CLIENT_ID);
    pub(crate) static MFA: HeaderName = HeaderName::from_static(super::MFA);
    pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static(super::REQUEST_ID);
    pub(crate) static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub(crate) static FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    /// The break-glass reason: for the audit trail, never forwarded.
    pub(crate) static BREAK_GLASS: HeaderName = HeaderName::from_static(super::BREAK_GLASS);
    pub(crate) static FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
}

/// The id of a watermarked export, on its answer (and in its mark and audit events).
pub(crate) const EXPORT_ID: &str = "x-invoiceguard-export-id";
