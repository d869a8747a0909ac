//! The real IdP: `tests/idp/server.mjs` (oidc-provider) under node, on a free port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
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
    _dir: Option<TempDir>,
}

/// Options of a user token request.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest<'a> {
    /// `amr` values to claim instead of the default `pwd,otp` (e.g. `pwd` for no MFA).
    pub amr: Option<&'a str>,
    /// Lifetime in seconds instead of the default.
    pub ttl: Option<u32>,
    /// The resource (audience) instead of the invoicing API.
    pub resource: Option<&'a str>,
}

impl Idp {
    /// Starts an IdP with fresh keys.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = TempDir::new("idp")?;
        let keys = dir.path().join("keys.json");
        let mut idp = Self::start_with_keys(&keys, free_port()?).await?;
        idp._dir = Some(dir);
        Ok(idp)
    }

    /// Starts an IdP on `port` with the signing keys in `keys` (created there when missing), so
    /// that a second IdP can sign with the same keys under another issuer.
    pub async fn start_with_keys(keys: &Path, port: u16) -> anyhow::Result<Self> {
        let idp_dir = repo_root().join("tests/idp");
        if !idp_dir.join("node_modules/oidc-provider").is_dir() {
            bail!("the test IdP is not installed: run `npm ci` in tests/idp (make test does it)");
        }
        let child = Command::new("node")
            .arg(idp_dir.join("server.mjs"))
            .args(["--port", &port.to_string(), "--keys"])
            .arg(keys)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start node (is Node.js installed?)")?;
        let mut idp = Self {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            keys: keys.to_owned(),
            _dir: None,
        };
        idp.wait_ready().await?;
        Ok(idp)
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
                bail!("the IdP exited at start ({status})");
            }
            if let Ok(reply) = crate::client::get(&url, None).await
                && reply.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the IdP did not answer at {url} within 20 s");
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
                format!("Basic {}", base64(&format!("{client}:{secret}"))),
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

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 with padding, for the Basic header.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(super::base64("f"), "Zg==");
        assert_eq!(super::base64("fo"), "Zm8=");
        assert_eq!(super::base64("foo"), "Zm9v");
        assert_eq!(super::base64("a:b"), "YTpi");
    }
}
