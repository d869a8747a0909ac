//! The `[authn]` section of the configuration.

use serde::Deserialize;

/// How callers are authenticated: which IdP issues their tokens and what the tokens must say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnConfig {
    /// The IdP's issuer identifier (`iss`), e.g. `https://login.example.com/realms/finance`; its
    /// OpenID discovery document names the signing keys (`jwks_uri`).
    pub issuer: String,
    /// The audiences (`aud`) a token must carry at least one of: the invoicing API's identifier.
    pub audience: Vec<String>,
    /// The claim holding the user's roles (a list of strings, or one space-separated string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// `amr` values of which at least one must be present for a login to count as multi-factor.
    #[serde(default = "default_mfa_amr")]
    pub mfa_amr: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// How often the signing keys are fetched again, in seconds.
    #[serde(default = "default_jwks_refresh_s")]
    pub jwks_refresh_s: u64,
    /// Timeout of one call to the IdP (discovery, JWKS), in milliseconds.
    #[serde(default = "default_idp_timeout_ms")]
    pub idp_timeout_ms: u64,
}

fn default_roles_claim() -> String {
    "roles".to_owned()
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

fn default_jwks_refresh_s() -> u64 {
    300
}

fn default_idp_timeout_ms() -> u64 {
    5_000
}

impl AuthnConfig {
    /// Checks the section, naming each problem with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match http::Uri::try_from(self.issuer.as_str()) {
            Ok(uri) if matches!(uri.scheme_str(), Some("https" | "http")) => {}
            _ => problems.push(format!(
                "authn.issuer: `{}` is not an http(s) URL",
                self.issuer
            )),
        }
        if self.audience.is_empty() || self.audience.iter().any(String::is_empty) {
            problems.push("authn.audience: at least one non-empty audience is required".to_owned());
        }
        if self.roles_claim.is_empty() {
            problems.push("authn.roles_claim: must not be empty".to_owned());
        }
        if self.leeway_s > 300 {
            problems.push(format!(
                "authn.leeway_s: {} is more than the 300 seconds allowed",
                self.leeway_s
            ));
        }
        if self.jwks_refresh_s == 0 {
            problems.push("authn.jwks_refresh_s: must be at least 1".to_owned());
        }
        if self.idp_timeout_ms == 0 {
            problems.push("authn.idp_timeout_ms: must be at least 1".to_owned());
        }
        problems
    }
}
