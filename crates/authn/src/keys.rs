//! The IdP's signing keys: found by OpenID discovery, fetched from `jwks_uri`, kept in memory and
//! refreshed. The last good key set keeps serving while the IdP is down.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::error::AuthnError;
use crate::idp_client::IdpClient;

/// Unknown key ids trigger a refresh at most this often, so a flood of bogus `kid`s cannot hammer
/// the IdP.
const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// One verification key and the only algorithm it may be used with.
pub(crate) struct SigningKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: Algorithm,
}

/// A loaded key set: key id to key.
type KeySet = HashMap<String, Arc<SigningKey>>;

/// The subset of the OpenID discovery document the gateway reads.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The cached key set of one issuer.
pub(crate) struct KeyStore {
    issuer: String,
    client: IdpClient,
    keys: RwLock<Option<Arc<KeySet>>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyStore {
    pub(crate) fn new(issuer: String, client: IdpClient) -> Self {
        Self {
            issuer,
            client,
            keys: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether a key set has been loaded.
    pub(crate) fn is_loaded(&self) -> bool {
        self.keys.read().map(|k| k.is_some()).unwrap_or(false)
    }

    /// The key named `kid`: `Ok(None)` when the set has no such key, an error when no set is loaded.
    pub(crate) fn get(&self, kid: &str) -> Result<Option<Arc<SigningKey>>, AuthnError> {
        let keys = self
            .keys
            .read()
            .map_err(|_| AuthnError::KeysUnavailable("key cache is poisoned".to_owned()))?;
        match keys.as_ref() {
            Some(keys) => Ok(keys.get(kid).cloned()),
            None => Err(AuthnError::KeysUnavailable(
                "no signing keys fetched from the identity provider yet".to_owned(),
            )),
        }
    }

    /// Fetches the key set again because a token named a key id not in it, unless that was done
    /// less than [`UNKNOWN_KID_REFRESH_INTERVAL`] ago. Concurrent callers share one fetch.
    pub(crate) async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch().await {
            tracing::warn!(issuer = %self.issuer, %error, "signing key refresh failed");
        }
    }

    /// Fetches discovery and the key set now; on failure the previous set stays in use.
    pub(crate) async fn refresh(&self) -> Result<usize, String> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, String> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.client.get_json(&discovery_url).await?;
        if discovery.issuer != self.issuer {
            return Err(format!(
                "discovery at `{discovery_url}` names issuer `{}`, not `{}`",
                discovery.issuer, self.issuer
            ));
        }
        let set: JwkSet = self.client.get_json(&discovery.jwks_uri).await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            match signing_key(jwk) {
                Ok(Some(key)) => {
                    keys.insert(kid, Arc::new(key));
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%kid, %error, "ignoring an unusable signing key"),
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "`{}` holds no usable signing key",
                discovery.jwks_uri
            ));
        }
        let count = keys.len();
        let mut current = self
            .keys
            .write()
            .map_err(|_| "key cache is poisoned".to_owned())?;
        *current = Some(Arc::new(keys));
        tracing::info!(issuer = %self.issuer, keys = count, "signing keys loaded");
        Ok(count)
    }
}

/// Turns a published JWK into a verification key bound to one algorithm. Keys for encryption and
/// symmetric keys are skipped (`Ok(None)`): a token may never pick its own algorithm or key type.
fn signing_key(jwk: &Jwk) -> Result<Option<SigningKey>, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (_, AlgorithmParameters::OctetKey(_)) => return Ok(None),
        (Some(declared), _) => match declared_algorithm(*declared) {
            Some(algorithm) => algorithm,
            None => return Ok(None),
        },
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Ok(None),
        },
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, _) => return Ok(None),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Some(SigningKey { key, algorithm }))
}

/// The asymmetric signature algorithms accepted; anything else (HMAC, encryption) is refused.
fn declared_algorithm(declared: KeyAlgorithm) -> Option<Algorithm> {
    Some(match declared {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
