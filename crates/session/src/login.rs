//! A login in progress: what the gateway sends the browser to the IdP with (authorization code
//! flow, PKCE S256, `state`, `nonce`, and for a step-up `prompt=login`, `max_age`,
//! `acr_values`), and what it keeps until the browser comes back (RFC 9700 sections 2.1 and
//! 4.7): the `state` is single-use and bound to the browser by a cookie, the `nonce` to the ID
//! token, the PKCE verifier to the code.

use base64::Engine;
use invoiceguard_authn::AuthnError;
use serde::{Deserialize, Serialize};

use crate::config::SessionConfig;

/// What the gateway keeps of a login until the browser returns (under its `state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// PKCE's code verifier (RFC 7636).
    pub verifier: String,
    /// The same-origin path to return to.
    pub return_to: String,
    /// The `max_age` asked (a step-up for a fresh login).
    pub max_age_s: Option<u64>,
    /// Whether a multi-factor login was asked.
    pub mfa: bool,
    /// Whether the person must log in again at the IdP (`prompt=login`), even when the IdP
    /// still has a session of theirs.
    #[serde(default)]
    pub reauthenticate: bool,
}

/// What a login must achieve: a fresh login, multi-factor, or neither (a first login).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginDemand {
    /// A multi-factor login.
    pub mfa: bool,
    /// A login at most this old.
    pub max_age_s: Option<u64>,
    /// The person logs in again at the IdP (`prompt=login`): after a session's timeout, whose
    /// point is lost if the IdP's own session logs them in silently.
    pub reauthenticate: bool,
}

impl LoginDemand {
    /// Whether a policy's step-up asks for this login.
    pub fn is_step_up(&self) -> bool {
        self.mfa || self.max_age_s.is_some()
    }
}

impl PendingLogin {
    /// A new login returning to `return_to` (already checked same-origin): its `state`, and
    /// what is kept under it.
    pub fn new(return_to: String, demand: LoginDemand) -> Result<(String, Self), AuthnError> {
        let pending = Self {
            nonce: random_token()?,
            verifier: random_token()?,
            return_to,
            max_age_s: demand.max_age_s,
            mfa: demand.mfa,
            reauthenticate: demand.reauthenticate,
        };
        Ok((random_token()?, pending))
    }

    /// The authorization request URL the browser is sent to.
    pub fn authorization_url(
        &self,
        endpoint: &str,
        config: &SessionConfig,
        state: &str,
        mfa_acr: Option<&str>,
    ) -> String {
        let scope = std::iter::once("openid")
            .chain(config.scopes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let challenge = pkce_challenge(&self.verifier);
        let callback = config.callback_url();
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", &callback)
            .append_pair("scope", &scope)
            .append_pair("state", state)
            .append_pair("nonce", &self.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if self.max_age_s.is_some() || self.mfa || self.reauthenticate {
            query.append_pair("prompt", "login");
        }
        if let Some(age) = self.max_age_s {
            query.append_pair("max_age", &age.to_string());
        }
        if self.mfa
            && let Some(acr) = mfa_acr
        {
            query.append_pair("acr_values", acr);
        }
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        format!("{endpoint}{separator}{}", query.finish())
    }
}

/// 256 random bits from the system's CSPRNG, base64url (43 characters). The generator fails
/// only when the system has no entropy source; no guessable id is handed out then.
pub fn random_token() -> Result<String, AuthnError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| {
        AuthnError::SessionsUnavailable("the system's random generator failed".to_owned())
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// PKCE's S256 challenge of a verifier: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    fn config() -> SessionConfig {
        SessionConfig {
            client_id: "web".into(),
            client_secret_file: "/dev/null".into(),
            issuer: None,
            external_url: "https://invoices.example.com".into(),
            scopes: vec!["invoices:read".into()],
            idle_timeout_s: 900,
            absolute_timeout_s: 28_800,
            same_site: crate::SameSite::Lax,
            on_device_change: crate::DeviceChange::Audit,
            cors_origins: Vec::new(),
            login_timeout_s: 600,
            mfa_acr: None,
        }
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let (_, query) = url.split_once('?').unwrap();
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn the_authorization_request_is_a_code_flow_with_pkce_state_and_nonce() {
        let (state, pending) = PendingLogin::new("/invoices".into(), LoginDemand::default())
            .unwrap_or_else(|_| {
                (
                    String::new(),
                    PendingLogin::new("/".into(), LoginDemand::default())
                        .map(|p| p.1)
                        .unwrap_or_else(|_| unreachable!()),
                )
            });
        let url = pending.authorization_url("https://idp.example/auth", &config(), &state, None);
        let params = query(&url);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("web"));
        assert_eq!(
            get("redirect_uri"),
            Some("https://invoices.example.com/.invoiceguard/callback")
        );
        assert_eq!(get("scope"), Some("openid invoices:read"));
        assert_eq!(get("state"), Some(state.as_str()));
        assert_eq!(get("nonce"), Some(pending.nonce.as_str()));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(
            get("code_challenge"),
            Some(pkce_challenge(&pending.verifier).as_str())
        );
        assert_eq!(get("prompt"), None, "a first login uses the IdP's session");
        assert_ne!(pending.nonce, pending.verifier);
    }

    #[test]
    fn a_step_up_or_a_timeout_asks_the_idp_for_a_new_login() {
        let demand = LoginDemand {
            mfa: true,
            max_age_s: Some(300),
            reauthenticate: false,
        };
        assert!(demand.is_step_up());
        let (state, pending) = PendingLogin::new("/".into(), demand).unwrap();
        let url = pending.authorization_url(
            "https://idp.example/auth?x=1",
            &config(),
            &state,
            Some("urn:mfa"),
        );
        assert!(url.starts_with("https://idp.example/auth?x=1&"), "{url}");
        let params = query(&url);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("prompt"), Some("login"));
        assert_eq!(get("max_age"), Some("300"));
        assert_eq!(get("acr_values"), Some("urn:mfa"));
        let timeout = LoginDemand {
            reauthenticate: true,
            ..LoginDemand::default()
        };
        assert!(!timeout.is_step_up());
        let (state, pending) = PendingLogin::new("/".into(), timeout).unwrap();
        let url = pending.authorization_url(
            "https://idp.example/auth",
            &config(),
            &state,
            Some("urn:mfa"),
        );
        let params = query(&url);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            (get("prompt"), get("max_age"), get("acr_values")),
            (Some("login"), None, None)
        );
    }

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let (a, b) = (
            random_token().unwrap_or_default(),
            random_token().unwrap_or_default(),
        );
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
