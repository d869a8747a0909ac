//! A session as the state store keeps it: the person (as the ID token and the token endpoint
//! said at login), the IdP session it belongs to, when it started and was last used, the device
//! it started on, and its CSRF token. Never a token the IdP issued. It is stored under the
//! SHA-256 of its id, so whoever reads the store cannot use what they read as a cookie.

use std::time::Duration;

use invoiceguard_authn::{AuthMethod, AuthnError, Principal, PrincipalKind};
use serde::{Deserialize, Serialize};

use crate::device::Device;

/// How long an expired session's record is kept after its end (seconds): it is never honoured,
/// only recognised as expired.
pub(crate) const EXPIRED_KEPT: u64 = 900;

/// A session's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The person's `sub`.
    pub subject: String,
    /// Roles, as the login's ID token gave them (through the roles claims and role map).
    pub roles: Vec<String>,
    /// The API scopes the IdP granted the gateway's client.
    pub scopes: Vec<String>,
    /// The gateway's client id.
    pub client_id: String,
    /// The login's authentication methods.
    pub amr: Vec<String>,
    /// The login's authentication context class.
    pub acr: Option<String>,
    /// When the person logged in at the IdP (Unix seconds).
    pub auth_time: Option<u64>,
    /// Whether the login was multi-factor.
    pub mfa: bool,
    /// The IdP that logged the person in.
    pub issuer: String,
    /// The IdP's session (`sid`), when its ID token named it.
    pub sid: Option<String>,
    /// When the session started (Unix seconds).
    pub created: u64,
    /// When it was last used (Unix seconds).
    pub last_seen: u64,
    /// The client it started on.
    pub device: Device,
    /// The token a client without Fetch Metadata or `Origin` sends with unsafe requests.
    pub csrf: String,
}

/// The timeouts a session is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Seconds without a request.
    pub idle_s: u64,
    /// Seconds since the login.
    pub absolute_s: u64,
}

impl Session {
    /// The principal the session authenticates, as a bearer token of the same login would.
    pub fn principal(&self) -> Principal {
        Principal {
            kind: PrincipalKind::User,
            id: self.subject.clone(),
            client_id: Some(self.client_id.clone()),
            roles: self.roles.clone(),
            scopes: self.scopes.clone(),
            amr: self.amr.clone(),
            acr: self.acr.clone(),
            auth_time: self.auth_time,
            mfa: self.mfa,
            method: AuthMethod::Session,
            issued_at: Some(self.created),
            email: None,
        }
    }

    /// Whether the session is still within both timeouts at `now`.
    pub fn check(&self, now: u64, timeouts: Timeouts) -> Result<(), AuthnError> {
        if now >= self.created.saturating_add(timeouts.absolute_s) {
            return Err(AuthnError::SessionExpired("absolute"));
        }
        if now >= self.last_seen.saturating_add(timeouts.idle_s) {
            return Err(AuthnError::SessionExpired("idle"));
        }
        Ok(())
    }

    /// How long the store keeps the record from `now`: until the idle timeout, never past the
    /// absolute one, and then [`EXPIRED_KEPT`] more — so that a request coming after the end is
    /// told (and audited) that its session expired, and why, rather than that it has none.
    pub fn keep_for(&self, now: u64, timeouts: Timeouts) -> Duration {
        let absolute_end = self.created.saturating_add(timeouts.absolute_s);
        let idle_end = now.saturating_add(timeouts.idle_s);
        Duration::from_secs(absolute_end.min(idle_end).saturating_sub(now) + EXPIRED_KEPT)
    }
}

/// The key a session is stored and audited under: the SHA-256 of its id, hex.
pub fn id_hash(id: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        id.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(created: u64, last_seen: u64) -> Session {
        Session {
            subject: "alice".into(),
            roles: vec!["invoicing".into()],
            scopes: vec!["invoices:read".into()],
            client_id: "invoiceguard-gateway".into(),
            amr: vec!["pwd".into()],
            acr: None,
            auth_time: Some(created),
            mfa: false,
            issuer: "https://idp.example".into(),
            sid: Some("sid-1".into()),
            created,
            last_seen,
            device: Device {
                agent: "Chrome on Linux".into(),
                network: "192.0.2.0/24".into(),
            },
            csrf: "t".into(),
        }
    }

    const T: Timeouts = Timeouts {
        idle_s: 900,
        absolute_s: 28_800,
    };

    #[test]
    fn idle_and_absolute_timeouts_end_a_session() {
        assert!(session(1000, 1000).check(1899, T).is_ok());
        assert!(matches!(
            session(1000, 1000).check(1900, T),
            Err(AuthnError::SessionExpired("idle"))
        ));
        // Used all along, still ended by the absolute timeout.
        assert!(matches!(
            session(1000, 29_700).check(29_800, T),
            Err(AuthnError::SessionExpired("absolute"))
        ));
        // Kept EXPIRED_KEPT past its end, to be recognised as expired.
        assert_eq!(
            session(1000, 1000).keep_for(1000, T),
            Duration::from_secs(900 + EXPIRED_KEPT)
        );
        assert_eq!(
            session(1000, 29_700).keep_for(29_700, T),
            Duration::from_secs(100 + EXPIRED_KEPT)
        );
    }

    #[test]
    fn the_principal_is_the_logins_and_the_hash_is_stable() {
        let principal = session(1, 1).principal();
        assert_eq!(principal.id, "alice");
        assert_eq!(principal.method, AuthMethod::Session);
        assert_eq!(principal.kind, PrincipalKind::User);
        assert_eq!(id_hash("abc").len(), 64);
        assert_eq!(id_hash("abc"), id_hash("abc"));
        assert_ne!(id_hash("abc"), id_hash("abd"));
    }
}
