//! The authenticate phase: from an `Authorization` header to a [`Principal`].

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::config::AuthnConfig;
use crate::error::AuthnError;
use crate::idp_client::IdpClient;
use crate::keys::KeyStore;
use crate::principal::Principal;
use crate::token;

/// While no key set has been loaded, discovery is retried this often.
const RETRY_WITHOUT_KEYS: Duration = Duration::from_secs(2);

/// Validates bearer tokens from the configured IdP.
pub struct Authenticator {
    config: AuthnConfig,
    keys: KeyStore,
}

impl Authenticator {
    /// Creates the authenticator and tries once to load the IdP's keys. When the IdP cannot be
    /// reached the authenticator still starts (every token is refused as unavailable) and
    /// [`Authenticator::spawn_refresh`] keeps trying.
    pub async fn start(config: AuthnConfig) -> Result<Arc<Self>, AuthnError> {
        let client = IdpClient::new(Duration::from_millis(config.idp_timeout_ms))
            .map_err(AuthnError::KeysUnavailable)?;
        let keys = KeyStore::new(config.issuer.clone(), client);
        if let Err(error) = keys.refresh().await {
            tracing::warn!(issuer = %config.issuer, %error, "identity provider not reachable yet; retrying");
        }
        Ok(Arc::new(Self { config, keys }))
    }

    /// Refreshes the key set in the background, every `jwks_refresh_s`, or every few seconds
    /// while none is loaded. The task ends when the authenticator is dropped.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wait = match weak.upgrade() {
                    Some(me) if me.keys.is_loaded() => {
                        Duration::from_secs(me.config.jwks_refresh_s)
                    }
                    Some(_) => RETRY_WITHOUT_KEYS,
                    None => return,
                };
                tokio::time::sleep(wait).await;
                let Some(me) = weak.upgrade() else { return };
                if let Err(error) = me.keys.refresh().await {
                    tracing::warn!(issuer = %me.config.issuer, %error, "signing key refresh failed");
                }
            }
        });
    }

    /// Whether the IdP's signing keys are loaded (for readiness).
    pub fn is_ready(&self) -> bool {
        self.keys.is_loaded()
    }

    /// Authenticates the caller from the request's `Authorization` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Principal, AuthnError> {
        let token = bearer_token(authorization)?;
        let header = token::header(token)?;
        let kid = header.kid.as_deref().ok_or(AuthnError::UnknownSigningKey)?;
        let key = match self.keys.get(kid)? {
            Some(key) => key,
            None => {
                self.keys.refresh_for_unknown_kid().await;
                self.keys.get(kid)?.ok_or(AuthnError::UnknownSigningKey)?
            }
        };
        let claims = token::verify(token, &header, &key, &self.config)?;
        Principal::from_claims(&claims, &self.config)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750).
fn bearer_token(authorization: Option<&HeaderValue>) -> Result<&str, AuthnError> {
    let value = authorization.ok_or(AuthnError::MissingToken)?;
    let value = value.to_str().map_err(|_| AuthnError::NotBearer)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthnError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthnError::NotBearer);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthnError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_forms() {
        let header = |v: &'static str| HeaderValue::from_static(v);
        assert_eq!(bearer_token(Some(&header("Bearer abc"))).unwrap(), "abc");
        assert_eq!(bearer_token(Some(&header("bearer abc"))).unwrap(), "abc");
        assert!(matches!(bearer_token(None), Err(AuthnError::MissingToken)));
        assert!(matches!(
            bearer_token(Some(&header("Basic abc"))),
            Err(AuthnError::NotBearer)
        ));
        assert!(matches!(
            bearer_token(Some(&header("Bearer "))),
            Err(AuthnError::Malformed)
        ));
    }
}
