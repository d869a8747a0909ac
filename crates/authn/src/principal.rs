//! Who is calling: built from a verified token's claims.

use serde_json::{Map, Value};

use crate::config::AuthnConfig;
use crate::error::AuthnError;

/// The longest subject, client id, role or scope accepted.
const MAX_NAME_BYTES: usize = 256;

/// The two kinds of caller, which policies treat differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// An interactive person.
    User,
    /// An integration account: a client-credentials token, whose subject is its own client id
    /// (RFC 9068 section 2.2).
    ServiceAccount,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User or integration account.
    pub kind: PrincipalKind,
    /// The token's `sub`.
    pub id: String,
    /// The OAuth client the token was issued to (`client_id`), when the token says.
    pub client_id: Option<String>,
    /// Roles from the configured roles claim (users only).
    pub roles: Vec<String>,
    /// Scopes from the `scope` claim.
    pub scopes: Vec<String>,
    /// Authentication methods (`amr`).
    pub amr: Vec<String>,
    /// Whether the login was multi-factor, by the configured `amr` values.
    pub mfa: bool,
}

impl Principal {
    /// Builds the principal from verified claims. Names that would be unsafe in a header or
    /// ambiguous in a list (control characters, commas, spaces in roles) are refused.
    pub(crate) fn from_claims(
        claims: &Map<String, Value>,
        config: &AuthnConfig,
    ) -> Result<Self, AuthnError> {
        let id = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| is_safe_name(sub, false))
            .ok_or_else(|| AuthnError::BadClaim("sub".to_owned()))?
            .to_owned();
        let client_id = match claims.get("client_id") {
            None => None,
            Some(Value::String(client)) if is_safe_name(client, false) => Some(client.clone()),
            Some(_) => return Err(AuthnError::BadClaim("client_id".to_owned())),
        };
        let kind = if client_id.as_deref() == Some(id.as_str()) {
            PrincipalKind::ServiceAccount
        } else {
            PrincipalKind::User
        };
        let roles = match kind {
            PrincipalKind::User => names(claims, &config.roles_claim)?,
            PrincipalKind::ServiceAccount => Vec::new(),
        };
        let scopes = names(claims, "scope")?;
        let amr = names(claims, "amr")?;
        let mfa = amr.iter().any(|method| config.mfa_amr.contains(method));
        Ok(Self {
            kind,
            id,
            client_id,
            roles,
            scopes,
            amr,
            mfa,
        })
    }
}

/// A claim that is a list of names, or one space-separated string of them; absent means empty.
fn names(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, AuthnError> {
    let bad = || AuthnError::BadClaim(claim.to_owned());
    let values: Vec<&str> = match claims.get(claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.split_ascii_whitespace().collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if values.iter().all(|name| is_safe_name(name, true)) {
        Ok(values.into_iter().map(str::to_owned).collect())
    } else {
        Err(bad())
    }
}

/// Printable ASCII, not empty, bounded; list items also without spaces or commas.
fn is_safe_name(name: &str, list_item: bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() || (b == b' ' && !list_item))
        && !(list_item && name.contains(','))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> AuthnConfig {
        serde_json::from_value(json!({"issuer": "https://idp", "audience": ["api"]})).unwrap()
    }

    fn principal(claims: Value) -> Result<Principal, AuthnError> {
        Principal::from_claims(claims.as_object().unwrap(), &config())
    }

    #[test]
    fn user_with_roles_and_mfa() {
        let p = principal(json!({"sub": "alice", "client_id": "web", "roles": ["invoicing"], "amr": ["pwd", "otp"]})).unwrap();
        assert_eq!(p.kind, PrincipalKind::User);
        assert_eq!(p.roles, ["invoicing"]);
        assert!(p.mfa);
    }

    #[test]
    fn password_only_is_not_mfa() {
        let p = principal(json!({"sub": "alice", "amr": ["pwd"]})).unwrap();
        assert!(!p.mfa);
    }

    #[test]
    fn client_credentials_token_is_a_service_account() {
        let p = principal(json!({"sub": "erp", "client_id": "erp", "scope": "invoices:read partners:read", "roles": ["admin"]})).unwrap();
        assert_eq!(p.kind, PrincipalKind::ServiceAccount);
        assert_eq!(p.scopes, ["invoices:read", "partners:read"]);
        assert!(
            p.roles.is_empty(),
            "a service account never takes user roles"
        );
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert!(principal(json!({"sub": "alice\r\nx-evil: 1"})).is_err());
        assert!(principal(json!({"sub": "alice", "roles": ["a,admin"]})).is_err());
        assert!(
            principal(json!({"sub": "alice", "roles": "invoicing admin"}))
                .unwrap()
                .roles
                .len()
                == 2
        );
        assert!(principal(json!({"sub": "alice", "roles": [1]})).is_err());
        assert!(principal(json!({"roles": []})).is_err());
    }
}
