//! The `[session]` section: the gateway as an OpenID Connect client for browsers, and the
//! session's timeouts, cookie and device rules.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Browser sessions. Absent: the gateway takes bearer tokens, API keys and certificates only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The gateway's client id at the IdP.
    pub client_id: String,
    /// A file holding the client secret (`client_secret_basic` at the token endpoint).
    pub client_secret_file: PathBuf,
    /// The IdP browsers log in at: one of `authn`'s issuers (default: the first).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The origin browsers reach the gateway at (`https://invoices.example.com`): the callback
    /// (`/.invoiceguard/callback`) is under it, and unsafe requests must come from it.
    pub external_url: String,
    /// The API scopes the login asks for besides `openid` (what the web UI may do, within the
    /// person's roles; `policies/scopes.cedar`).
    pub scopes: Vec<String>,
    /// A session unused this long ends (seconds; default 900, 15 minutes).
    #[serde(default = "default_idle")]
    pub idle_timeout_s: u64,
    /// A session ends this long after its login, used or not (seconds; default 28800, 8 hours).
    #[serde(default = "default_absolute")]
    pub absolute_timeout_s: u64,
    /// The cookie's `SameSite`: `lax` (default: links from mail and other sites still arrive
    /// logged in, cross-site posts do not) or `strict`.
    #[serde(default)]
    pub same_site: SameSite,
    /// What a session used from another client (browser family, operating system or network)
    /// causes: `audit` (a high-severity event; default) or `end` (the session ends too).
    #[serde(default)]
    pub on_device_change: DeviceChange,
    /// Other origins allowed to make credentialed (cookie) requests to the gateway; none by
    /// default.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// How long a login may take at the IdP (seconds; default 600).
    #[serde(default = "default_login_timeout")]
    pub login_timeout_s: u64,
    /// The `acr_values` asked when a policy wants a multi-factor login (default: the first of
    /// `authn.mfa_acr`).
    #[serde(default)]
    pub mfa_acr: Option<String>,
}

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// `SameSite=Lax`.
    #[default]
    Lax,
    /// `SameSite=Strict`.
    Strict,
}

/// What a change of device does to a session.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChange {
    /// Audited (severity high); the session goes on.
    #[default]
    Audit,
    /// Audited, and the session ends.
    End,
}

fn default_idle() -> u64 {
    900
}

fn default_absolute() -> u64 {
    28_800
}

fn default_login_timeout() -> u64 {
    600
}

impl SessionConfig {
    /// The gateway's origin, as browsers name it (`scheme://host[:port]`, no trailing slash).
    pub fn origin(&self) -> &str {
        self.external_url.trim_end_matches('/')
    }

    /// Where the IdP sends the browser back with a code.
    pub fn callback_url(&self) -> String {
        format!("{}/.invoiceguard/callback", self.origin())
    }

    /// Makes a relative secret file relative to the configuration file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.client_secret_file.is_relative() {
            self.client_secret_file = base.join(&self.client_secret_file);
        }
    }

    /// What is wrong with the section, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, why: String| problems.push(format!("session.{key}: {why}"));
        if self.client_id.trim().is_empty() {
            problem("client_id", "must not be empty".to_owned());
        }
        match std::fs::read_to_string(&self.client_secret_file) {
            Ok(secret) if secret.trim().is_empty() => problem(
                "client_secret_file",
                format!("`{}` is empty", self.client_secret_file.display()),
            ),
            Ok(_) => {}
            Err(error) => problem(
                "client_secret_file",
                format!(
                    "cannot read `{}`: {error}",
                    self.client_secret_file.display()
                ),
            ),
        }
        if let Err(why) = check_origin(self.origin(), true) {
            problem("external_url", why);
        }
        for origin in &self.cors_origins {
            if let Err(why) = check_origin(origin, false) {
                problem("cors_origins", why);
            }
        }
        if self.scopes.iter().any(|scope| {
            scope.is_empty() || scope == "openid" || scope.contains(|c: char| !c.is_ascii_graphic())
        }) {
            problem(
                "scopes",
                "each scope is a non-empty name without spaces (`openid` is always asked)"
                    .to_owned(),
            );
        }
        if !(1..=86_400).contains(&self.idle_timeout_s) {
            problem(
                "idle_timeout_s",
                format!("{} is outside 1..=86400 seconds", self.idle_timeout_s),
            );
        }
        if self.absolute_timeout_s < self.idle_timeout_s || self.absolute_timeout_s > 7 * 86_400 {
            problem(
                "absolute_timeout_s",
                format!(
                    "{} must be at least idle_timeout_s and at most 604800 seconds (7 days)",
                    self.absolute_timeout_s
                ),
            );
        }
        if !(30..=3600).contains(&self.login_timeout_s) {
            problem(
                "login_timeout_s",
                format!("{} is outside 30..=3600 seconds", self.login_timeout_s),
            );
        }
        problems
    }
}

/// An origin: `https://host[:port]` (or `http://` for a loopback host, whose cookies browsers
/// still keep `Secure`), without path, query or credentials.
fn check_origin(origin: &str, external: bool) -> Result<(), String> {
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| format!("`{origin}` is not an origin (https://host[:port])"))?;
    let host = rest.rsplit_once(':').map_or(rest, |(host, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() {
            host
        } else {
            rest
        }
    });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        return Err(format!(
            "`{origin}` is not an origin (scheme and host only, no path)"
        ));
    }
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback || !external => Ok(()),
        _ => Err(format!(
            "`{origin}` must be https (the session cookie is `Secure`; http only on a loopback host)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(external_url: &str) -> SessionConfig {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let secret =
            std::env::temp_dir().join(format!("ig-session-secret-{}-{n}", std::process::id()));
        std::fs::write(&secret, "s3cret").unwrap();
        SessionConfig {
            client_id: "invoiceguard-gateway".into(),
            client_secret_file: secret,
            issuer: None,
            external_url: external_url.into(),
            scopes: vec!["invoices:read".into()],
            idle_timeout_s: default_idle(),
            absolute_timeout_s: default_absolute(),
            same_site: SameSite::Lax,
            on_device_change: DeviceChange::Audit,
            cors_origins: Vec::new(),
            login_timeout_s: default_login_timeout(),
            mfa_acr: None,
        }
    }

    #[test]
    fn the_defaults_validate_and_the_origin_must_be_one() {
        assert_eq!(
            config("https://invoices.example.com/").validate(),
            Vec::<String>::new()
        );
        assert_eq!(
            config("https://invoices.example.com/").callback_url(),
            "https://invoices.example.com/.invoiceguard/callback"
        );
        assert!(config("http://127.0.0.1:8443").validate().is_empty());
        for bad in [
            "http://invoices.example.com",
            "invoices.example.com",
            "https://a/b",
            "https://u@a",
        ] {
            let problems = config(bad).validate();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("session.external_url")),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn timeouts_are_bounded_and_ordered() {
        let mut c = config("https://a.example");
        c.idle_timeout_s = 0;
        assert!(c.validate().iter().any(|p| p.contains("idle_timeout_s")));
        let mut c = config("https://a.example");
        c.absolute_timeout_s = 600;
        assert!(
            c.validate()
                .iter()
                .any(|p| p.contains("absolute_timeout_s"))
        );
        let mut c = config("https://a.example");
        c.client_secret_file = "/nonexistent/secret".into();
        assert!(
            c.validate()
                .iter()
                .any(|p| p.contains("client_secret_file"))
        );
    }
}
