//! The `[authn]` section of the configuration.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How callers are authenticated: which IdPs issue their tokens, what the tokens must say, and the
/// integration credentials accepted beside tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnConfig {
    /// The IdP's issuer identifier (`iss`), e.g. `https://login.example.com/realms/finance`; its
    /// OpenID discovery document names the signing keys (`jwks_uri`).
    pub issuer: String,
    /// The audiences (`aud`) a token must carry at least one of: the invoicing API's identifier.
    pub audience: Vec<String>,
    /// More issuers to trust (e.g. a partner IdP), each with its own audiences.
    #[serde(default)]
    pub also_trust: Vec<IssuerConfig>,
    /// Claims holding the user's roles or groups (lists of strings, or space-separated strings).
    #[serde(default = "default_roles_claims")]
    pub roles_claims: Vec<String>,
    /// A TOML file mapping IdP role and group names to Cedar roles; when set, unmapped names grant
    /// nothing. Without it, claim values are the Cedar role names.
    pub roles_file: Option<PathBuf>,
    /// `amr` values of which at least one makes a login multi-factor.
    #[serde(default = "default_mfa_amr")]
    pub mfa_amr: Vec<String>,
    /// `acr` values that make a login multi-factor.
    #[serde(default)]
    pub mfa_acr: Vec<String>,
    /// Hold a user's token to its scopes (RFC 6749 section 3.3, RFC 9068 section 2.2.3): the
    /// policies then see them, and the baseline's `scopes.cedar` forbids what they do not grant.
    /// On by default; off only for an IdP that issues user tokens without useful scopes.
    #[serde(default = "yes")]
    pub enforce_user_scopes: bool,
    /// When set, a JWT's `typ` header must be this (`at+jwt`, RFC 9068; `application/at+jwt` also
    /// matches).
    pub require_typ: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// Tokens longer than this are refused unread.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// The longest the signing keys are kept before they are fetched again, in seconds (sooner
    /// when the JWKS response's `Cache-Control: max-age` says so).
    #[serde(default = "default_jwks_refresh_s")]
    pub jwks_refresh_s: u64,
    /// Tokens naming an unknown key id refresh the keys at most this often, in seconds; such a
    /// token waits for the next refresh (at most this long), so a rotation is never missed.
    #[serde(default = "default_jwks_min_refresh_s")]
    pub jwks_min_refresh_s: u64,
    /// Timeout of one call to the IdP (discovery, JWKS, introspection), in milliseconds.
    #[serde(default = "default_idp_timeout_ms")]
    pub idp_timeout_ms: u64,
    /// How many verified tokens are remembered (each until its `exp`), so that a signature is
    /// checked once per token. 0 turns the cache off.
    #[serde(default = "default_token_cache_entries")]
    pub token_cache_entries: usize,
    /// Opaque tokens are checked at the IdP's introspection endpoint (RFC 7662) when set.
    pub introspection: Option<IntrospectionConfig>,
    /// The header carrying an API key.
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    /// Integration accounts that authenticate with an API key.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyAccount>,
    /// Integration accounts that authenticate with a TLS client certificate (the listener's
    /// `client_ca_file` must be set).
    #[serde(default)]
    pub mtls_accounts: Vec<MtlsAccount>,
}

/// One more trusted issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier.
    pub issuer: String,
    /// The audiences its tokens must carry at least one of.
    pub audience: Vec<String>,
}

/// RFC 7662 token introspection for opaque tokens, at the primary issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The gateway's client id at the IdP.
    pub client_id: String,
    /// A file holding the client secret (never the secret itself in the configuration).
    pub client_secret_file: PathBuf,
    /// The endpoint; from the discovery document when absent.
    pub endpoint: Option<String>,
    /// An active answer is remembered at most this long (and never past the token's `exp`).
    #[serde(default = "default_introspection_cache_s")]
    pub cache_s: u64,
}

/// An integration account holding API keys: the keys' SHA-256 hashes, so the configuration never
/// holds a key. Two hashes let an old and a new key work at once during rotation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAccount {
    /// The account's name (its Cedar `ServiceAccount` id).
    pub account: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Lowercase hex SHA-256 of each valid key (`invoiceguard apikey hash` prints one).
    pub sha256: Vec<String>,
}

/// An integration account identified by its TLS client certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsAccount {
    /// The DNS name the certificate must be valid for (a `subjectAltName`).
    pub dns_name: String,
    /// The account's name (its Cedar `ServiceAccount` id).
    pub account: String,
    /// Its scopes.
    pub scopes: Vec<String>,
}

/// A secret read from a file; it never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Reads a secret from a file (surrounding white space removed).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display()))?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(format!("secret file `{}` is empty", path.display()));
        }
        Ok(Self(secret.to_owned()))
    }

    /// The secret's text, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

fn default_roles_claims() -> Vec<String> {
    vec!["roles".to_owned()]
}

fn default_mfa_amr() -> Vec<String> {
    [
        "mfa", "otp", "hwk", "swk", "sc", "fpt", "face", "sms", "tel",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn default_leeway_s() -> u64 {
    30
}

fn default_max_token_bytes() -> usize {
    8 * 1024
}

fn default_jwks_refresh_s() -> u64 {
    300
}

fn default_jwks_min_refresh_s() -> u64 {
    1
}

fn default_idp_timeout_ms() -> u64 {
    5_000
}

fn default_token_cache_entries() -> usize {
    10_000
}

fn default_introspection_cache_s() -> u64 {
    60
}

fn default_api_key_header() -> String {
    "x-api-key".to_owned()
}

fn yes() -> bool {
    true
}

impl AuthnConfig {
    /// Every issuer trusted, the primary first.
    pub fn issuers(&self) -> Vec<IssuerConfig> {
        let primary = IssuerConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
        };
        std::iter::once(primary)
            .chain(self.also_trust.iter().cloned())
            .collect()
    }

    /// Makes relative file paths relative to `base` (the configuration file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(file) = &mut self.roles_file {
            resolve(file);
        }
        if let Some(introspection) = &mut self.introspection {
            resolve(&mut introspection.client_secret_file);
        }
    }

    /// Checks the section, naming each problem with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, issuer) in self.issuers().iter().enumerate() {
            let key = if i == 0 {
                "authn".to_owned()
            } else {
                format!("authn.also_trust[{}]", i - 1)
            };
            match http::Uri::try_from(issuer.issuer.as_str()) {
                Ok(uri) if matches!(uri.scheme_str(), Some("https" | "http")) => {}
                _ => problems.push(format!(
                    "{key}.issuer: `{}` is not an http(s) URL",
                    issuer.issuer
                )),
            }
            if issuer.audience.is_empty() || issuer.audience.iter().any(String::is_empty) {
                problems.push(format!(
                    "{key}.audience: at least one non-empty audience is required"
                ));
            }
        }
        if self.roles_claims.iter().any(String::is_empty) {
            problems.push("authn.roles_claims: names must not be empty".to_owned());
        }
        if let Some(file) = &self.roles_file
            && let Err(error) = crate::roles::RoleMap::load(file)
        {
            problems.push(format!("authn.roles_file: {error}"));
        }
        if self.leeway_s > 300 {
            problems.push(format!(
                "authn.leeway_s: {} is more than the 300 seconds allowed",
                self.leeway_s
            ));
        }
        for (key, value) in [
            ("jwks_refresh_s", self.jwks_refresh_s),
            ("jwks_min_refresh_s", self.jwks_min_refresh_s),
            ("idp_timeout_ms", self.idp_timeout_ms),
            ("max_token_bytes", self.max_token_bytes as u64),
        ] {
            if value == 0 {
                problems.push(format!("authn.{key}: must be at least 1"));
            }
        }
        if let Some(introspection) = &self.introspection
            && let Err(error) = Secret::from_file(&introspection.client_secret_file)
        {
            problems.push(format!("authn.introspection.client_secret_file: {error}"));
        }
        if http::HeaderName::from_bytes(self.api_key_header.as_bytes()).is_err() {
            problems.push(format!(
                "authn.api_key_header: `{}` is not a header name",
                self.api_key_header
            ));
        }
        for (i, account) in self.api_keys.iter().enumerate() {
            if account.sha256.is_empty() || account.sha256.len() > 2 {
                problems.push(format!(
                    "authn.api_keys[{i}].sha256: one or two key hashes are required"
                ));
            }
            for hash in &account.sha256 {
                if hash.len() != 64
                    || !hash
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    problems.push(format!(
                        "authn.api_keys[{i}].sha256: `{hash}` is not a lowercase hex SHA-256"
                    ));
                }
            }
        }
        for (i, account) in self.mtls_accounts.iter().enumerate() {
            if rustls::pki_types::DnsName::try_from(account.dns_name.as_str()).is_err() {
                problems.push(format!(
                    "authn.mtls_accounts[{i}].dns_name: `{}` is not a DNS name",
                    account.dns_name
                ));
            }
        }
        problems
    }
}
