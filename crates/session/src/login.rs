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
}

/// What a login must achieve: a fresh login, multi-factor, or neither (a first login).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginDemand {
    /// A multi-factor login.
    pub mfa: bool,
    /// A login at most this old.
    pub max_age_s: Option<u64>,
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
        if self.max_age_s.is_some() || self.mfa {
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
