//! Who is calling: built from a verified token's claims.

use serde_json::{Map, Value};

use crate::config::AuthnConfig;
use crate::error::AuthnError;
use crate::roles::RoleMap;

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

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT access token verified with the IdP's keys.
    Jwt,
    /// An opaque token the IdP confirmed by introspection.
    Introspection,
    /// An API key.
    ApiKey,
    /// A TLS client certificate.
    ClientCertificate,
    /// A browser session the gateway started after an OpenID Connect login.
    Session,
}

impl AuthMethod {
    /// The name used in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "bearer_jwt",
            Self::Introspection => "bearer_introspected",
            Self::ApiKey => "api_key",
            Self::ClientCertificate => "client_certificate",
            Self::Session => "session",
        }
    }
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
    /// The authentication context class (`acr`).
    pub acr: Option<String>,
    /// When the user logged in (`auth_time`, Unix seconds).
    pub auth_time: Option<u64>,
    /// Whether the login was multi-factor, by the configured `amr` and `acr` values.
    pub mfa: bool,
    /// How the caller authenticated to the gateway.
    pub method: AuthMethod,
    /// When the token was issued (`iat`, Unix seconds), or the browser session started.
    pub issued_at: Option<u64>,
    /// The `email` claim, when the token carries one (a security event may name a person by it).
    pub email: Option<String>,
}

impl Principal {
    /// Builds the principal from verified claims. Names that would be unsafe in a header or
    /// ambiguous in a list (control characters, commas, spaces in roles) are refused.
    pub(crate) fn from_claims(
        claims: &Map<String, Value>,
        config: &AuthnConfig,
        role_map: Option<&RoleMap>,
        method: AuthMethod,
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
            PrincipalKind::User => {
                let mut names = Vec::new();
                for claim in &config.roles_claims {
                    names.extend(list(claims, claim, role_map.is_none())?);
                }
                match role_map {
                    Some(map) => map.map(names.iter().map(String::as_str)),
                    None => {
                        names.sort();
                        names.dedup();
                        names
                    }
                }
            }
            PrincipalKind::ServiceAccount => Vec::new(),
        };
        let scopes = list(claims, "scope", true)?;
        let amr = list(claims, "amr", true)?;
        let acr = match claims.get("acr") {
            None | Some(Value::Null) => None,
            Some(Value::String(acr)) if is_safe_name(acr, false) => Some(acr.clone()),
            Some(_) => return Err(AuthnError::BadClaim("acr".to_owned())),
        };
        let auth_time = match claims.get("auth_time") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .ok_or_else(|| AuthnError::BadClaim("auth_time".to_owned()))?,
            ),
        };
        let issued_at = claims.get("iat").and_then(Value::as_u64);
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|email| is_safe_name(email, true))
            .map(str::to_ascii_lowercase);
        let mfa = amr.iter().any(|method| config.mfa_amr.contains(method))
            || acr.as_ref().is_some_and(|acr| config.mfa_acr.contains(acr));
        Ok(Self {
            kind,
            id,
            client_id,
            roles,
            scopes,
            amr,
            acr,
            auth_time,
            mfa,
            method,
            issued_at,
            email,
        })
    }

    /// An integration account authenticated by an API key or a client certificate.
    pub(crate) fn integration(account: &str, scopes: &[String], method: AuthMethod) -> Self {
        Self {
            kind: PrincipalKind::ServiceAccount,
            id: account.to_owned(),
            client_id: None,
            roles: Vec::new(),
            scopes: scopes.to_vec(),
            amr: Vec::new(),
            acr: None,
            auth_time: None,
            mfa: false,
            method,
            issued_at: None,
            email: None,
        }
    }

    /// Seconds since the login, when the token says when it was.
    pub fn auth_age_s(&self, now_unix: u64) -> Option<u64> {
        self.auth_time.map(|at| now_unix.saturating_sub(at))
    }
}

/// A claim that is a list of names, or one space-separated string of them; absent means empty.
/// With `strict`, every item must be a safe name (it becomes a header value or a Cedar id); role
/// and group names that go through the roles file are only looked up, so any string is allowed.
fn list(claims: &Map<String, Value>, claim: &str, strict: bool) -> Result<Vec<String>, AuthnError> {
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
    if strict && !values.iter().all(|name| is_safe_name(name, true)) {
        return Err(bad());
    }
    Ok(values.into_iter().map(str::to_owned).collect())
}

/// Printable ASCII, not empty, bounded; list items also without spaces or commas.
pub(crate) fn is_safe_name(name: &str, list_item: bool) -> bool {
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
        Principal::from_claims(
            claims.as_object().unwrap(),
            &config(),
            None,
            AuthMethod::Jwt,
        )
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
        let p = principal(json!({"sub": "alice", "amr": ["pwd"], "auth_time": 1000})).unwrap();
        assert!(!p.mfa);
        assert_eq!(p.auth_age_s(1600), Some(600));
        let mut config = config();
        config.mfa_acr = vec!["urn:acr:mfa".into()];
        let claims = json!({"sub": "alice", "amr": ["pwd"], "acr": "urn:acr:mfa"});
        let p = Principal::from_claims(claims.as_object().unwrap(), &config, None, AuthMethod::Jwt)
            .unwrap();
        assert!(p.mfa, "an acr listed in mfa_acr counts as multi-factor");
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
