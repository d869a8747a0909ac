//! The real IdP: `tests/idp/server.mjs` (oidc-provider) under node, on a free port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::client::send;
use crate::dirs::{TempDir, free_port, repo_root};

/// The audience the test IdP issues tokens for by default.
pub const AUDIENCE: &str = "urn:invoiceguard:invoicing-api";

/// A running IdP, stopped (by its pid) when dropped.
pub struct Idp {
    child: Child,
    /// Its issuer URL, e.g. `http://127.0.0.1:40123`.
    pub issuer: String,
    keys: PathBuf,
    /// A CA the IdP trusts for the gateways it calls (back-channel logout over TLS).
    trusted_ca: Option<PathBuf>,
    _dir: Option<TempDir>,
}

/// The gateway's web client at the test IdP (browser logins; tests/idp/users.json).
pub const WEB_CLIENT_ID: &str = "invoiceguard-web";

/// Options of a user token request.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest<'a> {
    /// `amr` values to claim instead of the default `pwd,otp` (e.g. `pwd` for no MFA).
    pub amr: Option<&'a str>,
    /// Lifetime in seconds instead of the default.
    pub ttl: Option<u32>,
    /// The resource (audience) instead of the invoicing API.
    pub resource: Option<&'a str>,
    /// The signing algorithm: `ES256` (default), `ES384`, `EdDSA`, `RS256` or `PS256`.
    pub alg: Option<&'a str>,
    /// Seconds since the login (`auth_time` in the past).
    pub auth_age: Option<u32>,
    /// An opaque token (for introspection) instead of a JWT.
    pub opaque: bool,
    /// The scopes the client asks for (space-separated) instead of every scope of the API.
    pub scope: Option<&'a str>,
}

impl Idp {
    /// Starts an IdP with its own copy of this test process's keys (made once: key generation
    /// is the slow part of a start), on a free port; a start that fails (the port was taken in
    /// the meantime) is tried again on another port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_trusting(None).await
    }

    /// Like [`Idp::start`], trusting `ca` (`NODE_EXTRA_CA_CERTS`) for the TLS gateways it sends
    /// back-channel logouts to.
    pub async fn start_trusting(ca: Option<&Path>) -> anyhow::Result<Self> {
        let dir = TempDir::new("idp")?;
        let keys = dir.path().join("keys.json");
        std::fs::copy(shared_keys()?, &keys)?;
        let mut last_error = None;
        for _ in 0..3 {
            match Self::launch(&keys, free_port()?, ca).await {
                Ok(mut idp) => {
                    idp._dir = Some(dir);
                    return Ok(idp);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the IdP did not start")))
    }

    /// Starts an IdP on `port` with the signing keys in `keys` (created there when missing), so
    /// that a second IdP can sign with the same keys under another issuer.
    pub async fn start_with_keys(keys: &Path, port: u16) -> anyhow::Result<Self> {
        Self::launch(keys, port, None).await
    }

    async fn launch(keys: &Path, port: u16, ca: Option<&Path>) -> anyhow::Result<Self> {
        let idp_dir = repo_root().join("tests/idp");
        if !idp_dir.join("node_modules/oidc-provider").is_dir() {
            bail!("the test IdP is not installed: run `npm ci` in tests/idp (make test does it)");
        }
        let mut idp = Self {
            child: Self::spawn(keys, port, ca)?,
            issuer: format!("http://127.0.0.1:{port}"),
            keys: keys.to_owned(),
            trusted_ca: ca.map(Path::to_path_buf),
            _dir: None,
        };
        idp.wait_ready().await?;
        Ok(idp)
    }

    fn spawn(keys: &Path, port: u16, ca: Option<&Path>) -> anyhow::Result<Child> {
        let mut node = Command::new("node");
        if let Some(ca) = ca {
            node.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Self::stderr_file(keys))
            .context("cannot create the IdP's stderr file")?;
        node.arg(repo_root().join("tests/idp/server.mjs"))
            .args(["--port", &port.to_string(), "--test-endpoints", "--keys"])
            .arg(keys)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("cannot start node (is Node.js installed?)")
    }

    /// Where the IdP's stderr goes: beside its keys, so that a start that fails can say why.
    fn stderr_file(keys: &Path) -> PathBuf {
        keys.with_extension("stderr")
    }

    /// The end of what the IdP printed on stderr.
    fn printed(&self) -> String {
        let text = std::fs::read_to_string(Self::stderr_file(&self.keys)).unwrap_or_default();
        let start = text
            .char_indices()
            .rev()
            .nth(2000)
            .map_or(0, |(index, _)| index);
        text[start..].trim().to_owned()
    }

    /// Stops the IdP (an outage): discovery, keys and tokens stop answering.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        self.child.wait()?;
        Ok(())
    }

    /// Starts it again on the same port with the same keys (tokens it issued stay valid).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let port: u16 = self
            .issuer
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .context("the issuer has no port")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.child = Self::spawn(&self.keys, port, self.trusted_ca.as_deref())?;
            match self.wait_ready().await {
                Ok(()) => return Ok(()),
                // The port may still be held for a moment by the stopped process.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The file holding the IdP's signing keys.
    pub fn keys_file(&self) -> &Path {
        &self.keys
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the IdP exited at start ({status}): {}", self.printed());
            }
            if let Ok(reply) = crate::client::get(&url, None).await
                && reply.status == 200
                && reply.json()["issuer"] == self.issuer.as_str()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the IdP did not answer at {url} within 20 s: {}",
                    self.printed()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn token(
        &self,
        client: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(' ', "+").replace(':', "%3A")))
            .collect::<Vec<_>>()
            .join("&");
        let request = Request::post(format!("{}/token", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("{client}:{secret}").as_bytes())
                ),
            )
            .body(Full::new(Bytes::from(body)))?;
        let reply = send(request).await?;
        let json = reply.json();
        match json.get("access_token").and_then(|t| t.as_str()) {
            Some(token) if reply.status == 200 => Ok(token.to_owned()),
            _ => bail!("the IdP refused a token ({}): {json}", reply.status),
        }
    }

    /// A user's access token (password `<user>-password`, see tests/idp/users.json).
    pub async fn user_token(
        &self,
        user: &str,
        options: TokenRequest<'_>,
    ) -> anyhow::Result<String> {
        let password = format!("{user}-password");
        let ttl = options.ttl.map(|t| t.to_string());
        let auth_age = options.auth_age.map(|t| t.to_string());
        let mut form = vec![
            ("grant_type", "urn:invoiceguard:params:grant-type:password"),
            ("username", user),
            ("password", password.as_str()),
            ("resource", options.resource.unwrap_or(AUDIENCE)),
        ];
        if let Some(amr) = options.amr {
            form.push(("amr", amr));
        }
        if let Some(ttl) = &ttl {
            form.push(("ttl", ttl));
        }
        if let Some(auth_age) = &auth_age {
            form.push(("auth_age", auth_age));
        }
        if let Some(alg) = options.alg {
            form.push(("alg", alg));
        }
        if options.opaque {
            form.push(("format", "opaque"));
        }
        if let Some(scope) = options.scope {
            form.push(("scope", scope));
        }
        self.token("invoiceguard-demo", "demo-client-secret", &form)
            .await
    }

    /// An integration account's token (client credentials) with the given scopes.
    pub async fn service_token(
        &self,
        client: &str,
        secret: &str,
        scope: &str,
    ) -> anyhow::Result<String> {
        self.token(
            client,
            secret,
            &[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", AUDIENCE),
            ],
        )
        .await
    }
}

impl Idp {
    /// Registers the gateway's web client for browser logins through the gateways at these
    /// origins (the first receives back-channel logouts).
    pub async fn register_gateways(&self, origins: &[&str]) -> anyhow::Result<()> {
        self.test_endpoint(
            "POST",
            "web-client",
            serde_json::json!({"gateways": origins}),
        )
        .await
        .map(drop)
    }

    /// The web client's secret, and the one-time code every test user's multi-factor login takes
    /// (tests/idp/users.json).
    pub fn web_client_secret_and_otp() -> anyhow::Result<(String, String)> {
        let users: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            repo_root().join("tests/idp/users.json"),
        )?)?;
        let text = |key: &str| {
            users[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("tests/idp/users.json has no `{key}`"))
        };
        Ok((text("web_client_secret")?, text("test_otp")?))
    }

    /// The bearer token and the audience of the gateway as a receiver of the IdP's security
    /// events (tests/idp/users.json).
    pub fn ssf_receiver() -> anyhow::Result<(String, String)> {
        let users: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            repo_root().join("tests/idp/users.json"),
        )?)?;
        let text = |key: &str| {
            users[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("tests/idp/users.json has no `{key}`"))
        };
        Ok((text("ssf_receiver_token")?, text("ssf_receiver_audience")?))
    }

    /// Sends a security event to every stream of the IdP's Shared Signals transmitter
    /// (tests/idp/ssf.mjs: `event`, `user` or `subject`, `payload`, and for bad tokens `aud`,
    /// `sign_with: "foreign"`, `typ`, `resend: jti`): the token's `jti` and each delivery's
    /// `status` and `body` (`queued` for a polled stream).
    pub async fn ssf_emit(&self, event: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        self.test_endpoint("POST", "ssf/emit", event).await
    }

    /// The errors receivers reported on polled events (`setErrs`).
    pub async fn ssf_errors(&self) -> anyhow::Result<serde_json::Value> {
        self.test_endpoint("GET", "ssf/errors", serde_json::Value::Null)
            .await
    }

    /// Gives a user other roles at the IdP, for the tokens issued from now on (a mover).
    pub async fn set_roles(&self, user: &str, roles: &[&str]) -> anyhow::Result<()> {
        self.test_endpoint(
            "POST",
            &format!("users/{user}"),
            serde_json::json!({ "roles": roles }),
        )
        .await
        .map(drop)
    }

    async fn test_endpoint(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}/__test/{path}", self.issuer))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let reply = send(request).await?;
        if reply.status != 200 {
            bail!(
                "test endpoint {path} answered {}: {:?}",
                reply.status,
                reply.body
            );
        }
        Ok(reply.json())
    }

    /// A token with any header and payload, signed with the IdP's key `kid` (its first key when
    /// `None`); `alg` and `kid` are set from the key unless `header` overrides them.
    pub async fn sign(
        &self,
        header: serde_json::Value,
        payload: serde_json::Value,
        kid: Option<&str>,
    ) -> anyhow::Result<String> {
        let answer = self
            .test_endpoint(
                "POST",
                "sign",
                serde_json::json!({"header": header, "payload": payload, "kid": kid}),
            )
            .await?;
        Ok(answer["token"].as_str().unwrap_or_default().to_owned())
    }

    /// A token signed with HMAC-SHA256 keyed by the public key `kid` (algorithm confusion).
    pub async fn sign_hmac_with_public_key(
        &self,
        kid: &str,
        payload: serde_json::Value,
    ) -> anyhow::Result<String> {
        let answer = self
            .test_endpoint("POST", "sign", serde_json::json!({"header": {"typ": "at+jwt"}, "payload": payload, "hmac_with_public_key_of": kid}))
            .await?;
        Ok(answer["token"].as_str().unwrap_or_default().to_owned())
    }

    /// Puts new keys in front of the old ones; returns the new key ids.
    pub async fn rotate_keys(&self) -> anyhow::Result<Vec<String>> {
        self.rotate(false).await
    }

    /// Replaces the keys by new ones: the old ones are no longer published. Returns the new key
    /// ids.
    pub async fn retire_keys(&self) -> anyhow::Result<Vec<String>> {
        self.rotate(true).await
    }

    async fn rotate(&self, retire: bool) -> anyhow::Result<Vec<String>> {
        let answer = self
            .test_endpoint("POST", "rotate", serde_json::json!({ "retire": retire }))
            .await?;
        Ok(serde_json::from_value(answer["kids"].clone())?)
    }

    /// How many times the JWKS has been fetched.
    pub async fn jwks_fetches(&self) -> anyhow::Result<u64> {
        let answer = self
            .test_endpoint("GET", "stats", serde_json::Value::Null)
            .await?;
        Ok(answer["jwks_fetches"].as_u64().unwrap_or_default())
    }

    /// The key ids of the IdP's keys, with their algorithms.
    pub fn keys(&self) -> anyhow::Result<Vec<(String, String)>> {
        let jwks: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&self.keys)?)?;
        Ok(jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                (
                    k["kid"].as_str().unwrap_or_default().to_owned(),
                    k["alg"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }
}

/// This test process's IdP keys, generated once by `tests/idp/keys.mjs` (Node's own crypto, no
/// module graph: well under a second). A child that fails or hangs (seen, rarely, on a loaded
/// machine) is tried again, and if every try fails the error says how each one ended, with what
/// node printed.
fn shared_keys() -> anyhow::Result<PathBuf> {
    static KEYS: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut keys = KEYS.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    if let Some(path) = keys.as_ref() {
        return Ok(path.clone());
    }
    remove_stale_keys();
    let path =
        std::env::temp_dir().join(format!("invoiceguard-idp-keys-{}.json", std::process::id()));
    let mut tries = Vec::new();
    for _ in 0..5 {
        match generate_keys(&path) {
            Ok(()) => {
                *keys = Some(path.clone());
                return Ok(path);
            }
            Err(error) => tries.push(format!("{error:#}")),
        }
    }
    bail!(
        "the IdP could not generate keys ({} tries): {}",
        tries.len(),
        tries.join("; ")
    )
}

/// Removes the shared keys of test processes that have ended (nothing removes a file when a
/// process exits): private keys are not left to pile up in the temporary folder.
fn remove_stale_keys() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("invoiceguard-idp-keys-"))
            .and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs `node tests/idp/keys.mjs path` once, within 30 seconds.
fn generate_keys(path: &Path) -> anyhow::Result<()> {
    let stderr = path.with_extension("stderr");
    let mut child = Command::new("node")
        .arg(repo_root().join("tests/idp/keys.mjs"))
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).context("cannot create the keys' stderr file")?)
        .spawn()
        .context("cannot run node (is Node.js installed?)")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let printed = std::fs::read_to_string(&stderr).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr);
    let printed = printed.trim();
    match status {
        Some(status) if status.success() && path.is_file() => Ok(()),
        Some(status) if status.success() => bail!("node exited 0 without writing {path:?}"),
        Some(status) => bail!("node {status} after {:?}: {printed}", started.elapsed()),
        None => bail!(
            "node killed after {:?} without an answer: {printed}",
            started.elapsed()
        ),
    }
}

/// base64url without padding (JWT segments).
pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding (JWT segments); empty when the text is not base64url.
pub fn b64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap_or_default()
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
