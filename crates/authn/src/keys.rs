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

/// The shortest time a key set is kept, whatever the IdP's `Cache-Control` says.
const MIN_KEEP: Duration = Duration::from_secs(30);

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
    introspection_endpoint: Option<String>,
}

/// The cached key set of one issuer.
pub(crate) struct KeyStore {
    issuer: String,
    client: IdpClient,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Serializes fetches, and holds when a fetch was last caused by an unknown key id.
    last_unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Unknown key ids refresh the set at most this often, so a flood of bogus `kid`s cannot
    /// hammer the IdP.
    min_refresh: Duration,
    /// The longest a set is kept.
    max_keep: Duration,
    /// When the current set should be fetched again (from `Cache-Control: max-age`).
    refresh_due: RwLock<Option<Instant>>,
    /// The discovery document's introspection endpoint, if it names one.
    introspection_endpoint: RwLock<Option<String>>,
}

impl KeyStore {
    pub(crate) fn new(
        issuer: String,
        client: IdpClient,
        min_refresh: Duration,
        max_keep: Duration,
    ) -> Self {
        Self {
            issuer,
            client,
            keys: RwLock::new(None),
            last_unknown_kid_fetch: tokio::sync::Mutex::new(None),
            min_refresh,
            max_keep,
            refresh_due: RwLock::new(None),
            introspection_endpoint: RwLock::new(None),
        }
    }

    /// The issuer these keys belong to.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How long until the set should be fetched again.
    pub(crate) fn refresh_in(&self) -> Duration {
        match self.refresh_due.read().ok().and_then(|due| *due) {
            Some(due) => due.saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// The introspection endpoint named by discovery.
    pub(crate) fn introspection_endpoint(&self) -> Option<String> {
        self.introspection_endpoint
            .read()
            .ok()
            .and_then(|e| e.clone())
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

    /// Fetches the key set again because a token named a key id not in it, unless an unknown key
    /// id caused a fetch less than `min_refresh` ago (scheduled refreshes do not count, so a key
    /// rotated in right after one is still picked up). Concurrent callers share one fetch.
    pub(crate) async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_unknown_kid_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch().await {
            tracing::warn!(issuer = %self.issuer, %error, "signing key refresh failed");
        }
    }

    /// Fetches discovery and the key set now; on failure the previous set stays in use.
    pub(crate) async fn refresh(&self) -> Result<usize, String> {
        let _serialized = self.last_unknown_kid_fetch.lock().await;
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, String> {
        let fetched = self.fetch_keys().await;
        invoiceguard_telemetry::metrics()
            .jwks_refreshes
            .with_label_values(&[if fetched.is_ok() { "ok" } else { "error" }])
            .inc();
        fetched
    }

    async fn fetch_keys(&self) -> Result<usize, String> {
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
        if let Ok(mut endpoint) = self.introspection_endpoint.write() {
            endpoint.clone_from(&discovery.introspection_endpoint);
        }
        let (set, max_age): (JwkSet, _) = self
            .client
            .get_json_with_max_age(&discovery.jwks_uri)
            .await?;
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
        // Refresh before the IdP's max-age runs out (at 80% of it), within [MIN_KEEP, max_keep].
        let keep = max_age
            .map_or(self.max_keep, |age| age.mul_f32(0.8))
            .clamp(MIN_KEEP, self.max_keep.max(MIN_KEEP));
        if let Ok(mut due) = self.refresh_due.write() {
            *due = Some(Instant::now() + keep);
        }
        tracing::info!(issuer = %self.issuer, keys = count, keep_s = keep.as_secs(), "signing keys loaded");
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
