//! The authenticate phase: from a request's credentials to a [`Principal`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

use crate::cache::{Cached, TokenCache, token_hash};
use crate::config::{AuthnConfig, IssuerConfig, Secret};
use crate::credentials::IntegrationAccounts;
use crate::error::AuthnError;
use crate::idp_client::IdpClient;
use crate::introspection::Introspector;
use crate::keys::KeyStore;
use crate::principal::{AuthMethod, Principal};
use crate::roles::RoleMap;
use crate::token::{self, Checks, Jwt};

/// While no key set has been loaded, discovery is retried this often.
const RETRY_WITHOUT_KEYS: Duration = Duration::from_secs(2);

/// What a request offers to prove who sent it.
#[derive(Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a HeaderValue>,
    /// The API key header.
    pub api_key: Option<&'a HeaderValue>,
    /// The TLS client certificate (already verified against the listener's client CA).
    pub client_certificate: Option<&'a CertificateDer<'static>>,
}

/// Validates credentials: tokens from the trusted IdPs, API keys and client certificates.
pub struct Authenticator {
    config: AuthnConfig,
    /// The client the IdP is asked with (discovery, keys, introspection, code exchange).
    client: IdpClient,
    issuers: Vec<(IssuerConfig, KeyStore)>,
    roles: Option<RoleMap>,
    cache: TokenCache,
    introspector: Option<Introspector>,
    /// API keys and mTLS accounts; replaced whole when the configuration's credentials are
    /// reloaded (a rotation, a revoked key removed), never half.
    integration: std::sync::RwLock<Arc<IntegrationAccounts>>,
}

/// What a reload of the credentials changed, for the log and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsReloaded {
    /// API-key accounts now, and before.
    pub api_keys: (usize, usize),
    /// Accepted API-key hashes now, and before.
    pub api_key_hashes: (usize, usize),
    /// mTLS accounts now, and before.
    pub mtls_accounts: (usize, usize),
    /// Whether the introspection client secret changed.
    pub introspection_secret_changed: bool,
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// Creates the authenticator and tries once to load each issuer's keys. When an IdP cannot be
    /// reached the authenticator still starts (its tokens are refused as unavailable) and
    /// [`Authenticator::spawn_refresh`] keeps trying.
    pub async fn start(config: AuthnConfig) -> Result<Arc<Self>, AuthnError> {
        let client = IdpClient::new(Duration::from_millis(config.idp_timeout_ms))
            .map_err(AuthnError::Setup)?;
        let roles = match &config.roles_file {
            Some(file) => Some(RoleMap::load(file).map_err(AuthnError::Setup)?),
            None => None,
        };
        let introspector = match &config.introspection {
            Some(introspection) => Some(Introspector::new(
                client.clone(),
                introspection.client_id.clone(),
                Secret::from_file(&introspection.client_secret_file).map_err(AuthnError::Setup)?,
                introspection.endpoint.clone(),
            )),
            None => None,
        };
        let mut issuers = Vec::new();
        for issuer in config.issuers() {
            let keys = KeyStore::new(
                issuer.issuer.clone(),
                client.clone(),
                Duration::from_secs(config.jwks_min_refresh_s),
                Duration::from_secs(config.jwks_refresh_s),
            );
            if let Err(error) = keys.refresh().await {
                tracing::warn!(issuer = %issuer.issuer, %error, "identity provider not reachable yet; retrying");
            }
            issuers.push((issuer, keys));
        }
        Ok(Arc::new(Self {
            client,
            cache: TokenCache::new(config.token_cache_entries),
            integration: std::sync::RwLock::new(Arc::new(IntegrationAccounts::new(
                &config.api_keys,
                &config.mtls_accounts,
            ))),
            config,
            issuers,
            roles,
            introspector,
        }))
    }

    /// The client the IdP is asked with.
    pub(crate) fn client(&self) -> &IdpClient {
        &self.client
    }

    /// The role map, when a roles file is configured.
    pub(crate) fn roles(&self) -> Option<&RoleMap> {
        self.roles.as_ref()
    }

    /// Every configured issuer's keys.
    pub(crate) fn issuer_stores(&self) -> impl Iterator<Item = &KeyStore> {
        self.issuers.iter().map(|(_, keys)| keys)
    }

    /// Refreshes each issuer's key set in the background: before the IdP's `max-age` runs out
    /// (at most every `jwks_refresh_s`), or every few seconds while none is loaded. The tasks end
    /// when the authenticator is dropped.
    pub fn spawn_refresh(self: &Arc<Self>) {
        for index in 0..self.issuers.len() {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    let wait = match weak.upgrade() {
                        Some(me) => match me.issuers.get(index) {
                            Some((_, keys)) if keys.is_loaded() => {
                                keys.refresh_in().max(Duration::from_secs(1))
                            }
                            Some(_) => RETRY_WITHOUT_KEYS,
                            None => return,
                        },
                        None => return,
                    };
                    tokio::time::sleep(wait).await;
                    let Some(me) = weak.upgrade() else { return };
                    if let Some((_, keys)) = me.issuers.get(index)
                        && let Err(error) = keys.refresh().await
                    {
                        tracing::warn!(issuer = %keys.issuer(), %error, "signing key refresh failed");
                    }
                }
            });
        }
    }

    /// The integration accounts in force.
    fn integration(&self) -> Arc<IntegrationAccounts> {
        self.integration
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts the credentials of a (validated) configuration in force at once: the API keys, the
    /// mTLS accounts and the introspection client secret (read again from its file). Everything
    /// is read first; on any problem nothing changes. The rest of `config` (issuers, claims,
    /// timeouts) needs a restart.
    pub fn reload_credentials(&self, config: &AuthnConfig) -> Result<CredentialsReloaded, String> {
        let secret = match (&self.introspector, &config.introspection) {
            (Some(_), Some(introspection)) => {
                Some(Secret::from_file(&introspection.client_secret_file)?)
            }
            (None, None) => None,
            _ => {
                return Err(
                    "authn.introspection was added or removed: that needs a restart".to_owned(),
                );
            }
        };
        let fresh = Arc::new(IntegrationAccounts::new(
            &config.api_keys,
            &config.mtls_accounts,
        ));
        let before = std::mem::replace(
            &mut *self.integration.write().unwrap_or_else(|p| p.into_inner()),
            fresh.clone(),
        );
        let introspection_secret_changed = match (&self.introspector, secret) {
            (Some(introspector), Some(secret)) => introspector.replace_secret(secret),
            _ => false,
        };
        Ok(CredentialsReloaded {
            api_keys: (fresh.api_key_accounts(), before.api_key_accounts()),
            api_key_hashes: (fresh.api_key_hashes(), before.api_key_hashes()),
            mtls_accounts: (fresh.mtls_accounts(), before.mtls_accounts()),
            introspection_secret_changed,
        })
    }

    /// Whether every trusted IdP's signing keys are loaded (for readiness).
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|(_, keys)| keys.is_loaded())
    }

    /// The configuration this authenticator runs with.
    pub fn config(&self) -> &AuthnConfig {
        &self.config
    }

    /// Authenticates the caller by the one credential it sends: a bearer token, an API key, or
    /// the client certificate of an integration account. Two at once are refused
    /// ([`AuthnError::MoreThanOneCredential`]): the gateway never picks one and ignores the
    /// other. A client certificate that is no integration account's (a device certificate the
    /// listener's CA also signs) is not a credential here; alone, it is refused as unknown.
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Arc<Principal>, AuthnError> {
        let certified = credentials
            .client_certificate
            .map(|certificate| self.integration().by_certificate(certificate));
        match (credentials.authorization, credentials.api_key, certified) {
            (Some(_), Some(_), _) => Err(AuthnError::MoreThanOneCredential(
                "a bearer token and an API key",
            )),
            (Some(_), None, Some(Ok(_))) | (None, Some(_), Some(Ok(_))) => Err(
                AuthnError::MoreThanOneCredential("a client certificate and another credential"),
            ),
            (Some(authorization), None, _) => self.bearer(bearer_token(authorization)?).await,
            (None, Some(key), _) => self.integration().by_api_key(key.as_bytes()).map(Arc::new),
            (None, None, Some(certified)) => certified.map(Arc::new),
            (None, None, None) => Err(AuthnError::MissingToken),
        }
    }

    /// The principal of a bearer token verified before and still valid (in the token cache),
    /// found without verifying anything; `None` for any other credentials. What
    /// [`Authenticator::authenticate`] would answer for them, minus the work.
    pub fn cached(&self, credentials: &Credentials<'_>) -> Option<Arc<Principal>> {
        // Another credential beside the token is for `authenticate` to refuse.
        if !self.cache.is_enabled()
            || credentials.api_key.is_some()
            || credentials.client_certificate.is_some()
        {
            return None;
        }
        let token = bearer_token(credentials.authorization?).ok()?;
        if token.len() > self.config.max_token_bytes {
            return None;
        }
        self.cached_bearer(&token_hash(token), now_unix())
    }

    /// The cache's entry for a token hash, while the key that verified it is still published.
    fn cached_bearer(&self, hash: &[u8; 32], now: u64) -> Option<Arc<Principal>> {
        let cached = self.cache.get(hash, now)?;
        let key_still_published = cached.verified_by.as_ref().is_none_or(|(issuer, kid)| {
            self.issuers
                .get(*issuer)
                .is_some_and(|(_, keys)| matches!(keys.get(kid), Ok(Some(_))))
        });
        if key_still_published {
            return Some(cached.principal);
        }
        self.cache.remove(hash);
        None
    }

    async fn bearer(&self, token: &str) -> Result<Arc<Principal>, AuthnError> {
        if token.len() > self.config.max_token_bytes {
            return Err(AuthnError::TooLarge);
        }
        let now = now_unix();
        let hash = token_hash(token);
        if let Some(principal) = self.cached_bearer(&hash, now) {
            return Ok(principal);
        }
        // Boxed: a cache miss is the rare path, and its futures (a key fetch, an introspection
        // call) would otherwise make every request's future larger.
        let cached = if token.bytes().filter(|b| *b == b'.').count() == 2 {
            Box::pin(self.verify_jwt(token, now)).await?
        } else {
            Box::pin(self.introspect(token, now)).await?
        };
        let principal = cached.principal.clone();
        self.cache.insert(hash, cached, now);
        Ok(principal)
    }

    async fn verify_jwt(&self, token: &str, now: u64) -> Result<Cached, AuthnError> {
        let arrived = std::time::Instant::now();
        let jwt = Jwt::parse(token)?;
        token::check_type(&jwt.header, self.config.require_typ.as_deref())?;
        let claimed = token::claimed(&jwt)?;
        let (index, (issuer, keys)) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, (issuer, _))| issuer.issuer == claimed.issuer)
            .ok_or(AuthnError::WrongIssuer)?;
        let kid = jwt
            .header
            .kid
            .clone()
            .ok_or(AuthnError::UnknownSigningKey)?;
        let key = match keys.get(&kid)? {
            Some(key) => key,
            None => {
                keys.refresh_for_unknown_kid(arrived).await?;
                keys.get(&kid)?.ok_or(AuthnError::UnknownSigningKey)?
            }
        };
        let checks = Checks {
            issuer: &issuer.issuer,
            audience: &issuer.audience,
            required: &["exp", "iss", "aud", "sub"],
            exp: true,
            nbf: true,
            iat: true,
            leeway_s: self.config.leeway_s,
        };
        let claims = jwt.verify(&key, &checks, now).map_err(|error| {
            if token::after_signature(&error) {
                proven(error, claimed.subject.as_deref())
            } else {
                error
            }
        })?;
        let until = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
        let principal =
            Principal::from_claims(&claims, &self.config, self.roles.as_ref(), AuthMethod::Jwt)
                .map_err(|error| proven(error, claims.get("sub").and_then(Value::as_str)))?;
        Ok(Cached {
            principal: Arc::new(principal),
            until,
            verified_by: Some((index, kid)),
        })
    }

    async fn introspect(&self, token: &str, now: u64) -> Result<Cached, AuthnError> {
        let introspector = self.introspector.as_ref().ok_or(AuthnError::Malformed)?;
        let (primary, keys) = self.issuers.first().ok_or(AuthnError::WrongIssuer)?;
        let claims = introspector
            .introspect(token, keys.introspection_endpoint())
            .await?;
        if let Some(iss) = claims.get("iss")
            && iss.as_str() != Some(primary.issuer.as_str())
        {
            return Err(AuthnError::WrongIssuer);
        }
        if let Some(aud) = claims.get("aud") {
            let audiences: Vec<&str> = match aud {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !audiences
                .iter()
                .any(|a| primary.audience.iter().any(|want| want == a))
            {
                return Err(AuthnError::WrongAudience);
            }
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| AuthnError::BadClaim("exp".to_owned()))?;
        if exp + self.config.leeway_s <= now {
            return Err(AuthnError::Expired);
        }
        let cache_s = self.config.introspection.as_ref().map_or(0, |i| i.cache_s);
        let principal = Principal::from_claims(
            &claims,
            &self.config,
            self.roles.as_ref(),
            AuthMethod::Introspection,
        )?;
        Ok(Cached {
            principal: Arc::new(principal),
            until: exp.min(now + cache_s),
            verified_by: None,
        })
    }
}

/// The failure of a token whose signature verified, with the subject it proves (when it names
/// one of at most 256 bytes). Only such failures count against a subject.
fn proven(error: AuthnError, subject: Option<&str>) -> AuthnError {
    match subject.filter(|subject| subject.len() <= 256) {
        Some(subject) => AuthnError::Proven {
            subject: subject.to_owned(),
            error: Box::new(error),
        },
        None => error,
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750).
pub(crate) fn bearer_token(value: &HeaderValue) -> Result<&str, AuthnError> {
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
        assert_eq!(bearer_token(&header("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&header("bearer abc")).unwrap(), "abc");
        assert!(matches!(
            bearer_token(&header("Basic abc")),
            Err(AuthnError::NotBearer)
        ));
        assert!(matches!(
            bearer_token(&header("Bearer ")),
            Err(AuthnError::Malformed)
        ));
    }
}
