//! The IdP's signing keys: found by OpenID discovery, fetched from `jwks_uri`, kept in memory and
//! refreshed. The last good key set keeps serving while the IdP is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use serde::Deserialize;

use crate::error::AuthnError;
use crate::idp_client::IdpClient;

/// The shortest time a key set is kept, whatever the IdP's `Cache-Control` says.
const MIN_KEEP: Duration = Duration::from_secs(30);

/// How many requests may wait at once for a key refresh caused by an unknown key id; more are
/// answered 503 at once, so a flood of made-up key ids cannot hold every connection.
const MAX_WAITING: usize = 256;

/// When the key set was last fetched.
#[derive(Default)]
struct Fetches {
    /// When the last fetch (of any cause) started.
    started: Option<Instant>,
    /// When the last fetch caused by an unknown key id started.
    unknown_kid_started: Option<Instant>,
}

/// One verification key, parsed once when its set was loaded, and the only algorithm it may be
/// used with.
pub(crate) struct SigningKey {
    key: ParsedPublicKey,
    pub(crate) algorithm: Algorithm,
}

impl SigningKey {
    /// Whether `signature` is this key's signature of `message` under its algorithm.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// A loaded key set: key id to key.
type KeySet = HashMap<String, Arc<SigningKey>>;

/// The subset of the OpenID discovery document the gateway reads.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    introspection_endpoint: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
}

/// The endpoints a relying party (the gateway's browser login) uses, as discovery names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginEndpoints {
    /// Where the browser is sent to log in.
    pub authorization: String,
    /// Where the gateway exchanges a code (back channel).
    pub token: String,
    /// Where the browser is sent to log out at the IdP (RP-Initiated Logout), when published.
    pub end_session: Option<String>,
}

/// The cached key set of one issuer.
pub(crate) struct KeyStore {
    issuer: String,
    /// The discovery document's name under `/.well-known/`: `openid-configuration` for an
    /// IdP, `ssf-configuration` for a Shared Signals transmitter.
    discovery: &'static str,
    client: IdpClient,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Serializes fetches (one at a time, shared by everyone waiting), and holds when they
    /// started.
    fetches: tokio::sync::Mutex<Fetches>,
    /// Unknown key ids refresh the set at most this often, so a flood of bogus `kid`s cannot
    /// hammer the IdP; a request with an unknown `kid` waits for the next refresh instead.
    min_refresh: Duration,
    /// Requests waiting for a refresh now.
    waiting: AtomicUsize,
    /// The longest a set is kept.
    max_keep: Duration,
    /// When the current set should be fetched again (from `Cache-Control: max-age`).
    refresh_due: RwLock<Option<Instant>>,
    /// The discovery document's introspection endpoint, if it names one.
    introspection_endpoint: RwLock<Option<String>>,
    /// The discovery document's login endpoints, when it names them.
    login_endpoints: RwLock<Option<LoginEndpoints>>,
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
            discovery: "openid-configuration",
            client,
            keys: RwLock::new(None),
            fetches: tokio::sync::Mutex::new(Fetches::default()),
            min_refresh,
            waiting: AtomicUsize::new(0),
            max_keep,
            refresh_due: RwLock::new(None),
            introspection_endpoint: RwLock::new(None),
            login_endpoints: RwLock::new(None),
        }
    }

    /// The same, for keys named by another discovery document (`ssf-configuration`).
    pub(crate) fn with_discovery(mut self, name: &'static str) -> Self {
        self.discovery = name;
        self
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

    /// The login endpoints named by discovery (authorization and token endpoints both named).
    pub(crate) fn login_endpoints(&self) -> Option<LoginEndpoints> {
        self.login_endpoints.read().ok().and_then(|e| e.clone())
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

    /// Makes sure the key set was fetched after `arrived` (when a request naming a key id not
    /// in the set arrived), so a key the IdP published before then is known. Fetches caused this
    /// way start at most once per `min_refresh` (scheduled refreshes do not count); a request
    /// that arrives meanwhile waits for the next one rather than being refused, and everyone
    /// waiting shares it. So nobody's made-up `kid` can make a real rotation fail: it costs the
    /// IdP one fetch per `min_refresh` and the waiting request at most that long. An error when
    /// the fetch failed, or when too many requests already wait.
    pub(crate) async fn refresh_for_unknown_kid(&self, arrived: Instant) -> Result<(), AuthnError> {
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if waiting >= MAX_WAITING {
            return Err(AuthnError::KeysUnavailable(
                "too many requests wait for a signing key refresh".to_owned(),
            ));
        }
        let mut fetches = self.fetches.lock().await;
        if fetches.started.is_some_and(|started| started >= arrived) {
            // A fetch that began after this request arrived has finished meanwhile.
            return Ok(());
        }
        if let Some(previous) = fetches.unknown_kid_started {
            tokio::time::sleep_until((previous + self.min_refresh).into()).await;
        }
        let now = Instant::now();
        fetches.unknown_kid_started = Some(now);
        fetches.started = Some(now);
        self.fetch().await.map(drop).map_err(|error| {
            tracing::warn!(issuer = %self.issuer, %error, "signing key refresh failed");
            AuthnError::KeysUnavailable(error)
        })
    }

    /// Fetches discovery and the key set now; on failure the previous set stays in use.
    pub(crate) async fn refresh(&self) -> Result<usize, String> {
        let mut fetches = self.fetches.lock().await;
        fetches.started = Some(Instant::now());
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
            "{}/.well-known/{}",
            self.issuer.trim_end_matches('/'),
            self.discovery
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
        if let Ok(mut endpoints) = self.login_endpoints.write() {
            *endpoints = match (&discovery.authorization_endpoint, &discovery.token_endpoint) {
                (Some(authorization), Some(token)) => Some(LoginEndpoints {
                    authorization: authorization.clone(),
                    token: token.clone(),
                    end_session: discovery.end_session_endpoint.clone(),
                }),
                _ => None,
            };
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

/// Counts a request out of the refresh's waiting room when it leaves (answered or dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Turns a published JWK into a verification key bound to one algorithm. Keys for encryption and
/// symmetric keys are skipped (`Ok(None)`): a token may never pick its own algorithm or key type.
pub(crate) fn signing_key(jwk: &Jwk) -> Result<Option<SigningKey>, String> {
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
    let key = parsed_key(&jwk.algorithm, algorithm)?;
    Ok(Some(SigningKey { key, algorithm }))
}

/// The JWK's public key parsed for `algorithm`'s verification (RFC 7518 section 6): an RSA
/// modulus and exponent, an EC point on the algorithm's curve, an Ed25519 point. A key of
/// another type than its algorithm's, or on another curve, is unusable.
fn parsed_key(
    parameters: &AlgorithmParameters,
    algorithm: Algorithm,
) -> Result<ParsedPublicKey, String> {
    let bytes = |field: &str, value: &str| {
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("`{field}` is not base64url"))
    };
    let rejected = |e: aws_lc_rs::error::KeyRejected| format!("the key is rejected: {e}");
    match (parameters, algorithm) {
        (AlgorithmParameters::RSA(rsa), _) => {
            let verification = match algorithm {
                Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return Err(format!("an RSA key for {algorithm:?}")),
            };
            let (n, e) = (bytes("n", &rsa.n)?, bytes("e", &rsa.e)?);
            // Big-endian without leading zeros, as aws-lc takes them (some IdPs pad `n`).
            let strip = |v: &[u8]| v[v.iter().take_while(|b| **b == 0).count()..].to_vec();
            signature::RsaPublicKeyComponents {
                n: strip(&n),
                e: strip(&e),
            }
            .to_parsed_public_key(verification)
            .map_err(rejected)
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256 | Algorithm::ES384) => {
            let (verification, curve): (&'static signature::EcdsaVerificationAlgorithm, _) =
                match algorithm {
                    Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED, EllipticCurve::P256),
                    _ => (&signature::ECDSA_P384_SHA384_FIXED, EllipticCurve::P384),
                };
            if ec.curve != curve {
                return Err(format!("a {:?} key for {algorithm:?}", ec.curve));
            }
            let mut point = vec![4];
            point.extend(bytes("x", &ec.x)?);
            point.extend(bytes("y", &ec.y)?);
            ParsedPublicKey::new(verification, point).map_err(rejected)
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA)
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            ParsedPublicKey::new(&signature::ED25519, bytes("x", &okp.x)?).map_err(rejected)
        }
        _ => Err(format!("the key's type does not fit {algorithm:?}")),
    }
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
