//! A real browser for the session tests: Debian's headless Chromium driven by `chromedriver`
//! over the W3C WebDriver protocol (HTTP and JSON, spoken here with the test client: the
//! WebDriver crates' protocol types are MPL-2.0, outside the licenses `deny.toml` allows).
//! Chromedriver and its browser are stopped (by pid) when the [`Browser`] is dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::client::send;
use crate::dirs::{TempDir, free_port};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: TempDir,
}

/// A cookie as the browser stores it.
#[derive(Debug, Clone)]
pub struct StoredCookie {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`, as the browser reports it (`Lax`, `Strict`, `None`).
    pub same_site: String,
    /// `Path`.
    pub path: String,
    /// The domain it is bound to (a host-only cookie: the host itself).
    pub domain: String,
    /// Its expiry (Unix seconds), when it has one (none: it ends with the browser).
    pub expiry: Option<u64>,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session with a fresh profile
    /// (test certificates accepted: the gateway's test CA is not the system's).
    pub async fn start() -> anyhow::Result<Self> {
        let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .context("chromedriver is not installed (tests/deps.sh installs chromium-driver)")?;
        let port = free_port()?;
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver")?;
        let profile = TempDir::new("chromium")?;
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.call("GET", "/status", None).await.is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1100,800", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let created = browser.call("POST", "/session", Some(capabilities)).await?;
        browser.session = created["sessionId"]
            .as_str()
            .context("chromedriver gave no session id")?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command: its `value`, or the driver's error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let reply = send(request).await?;
        let value: Value = serde_json::from_slice(&reply.body)
            .with_context(|| format!("WebDriver {method} {path}: not JSON"))?;
        if reply.status >= 400 {
            bail!(
                "WebDriver {method} {path}: {} {}",
                reply.status,
                value["value"]
            );
        }
        Ok(value["value"].clone())
    }

    fn at(&self, command: &str) -> String {
        format!("/session/{}{command}", self.session)
    }

    /// Opens a URL and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})))
            .await
            .map(drop)
    }

    /// The URL the browser shows now.
    pub async fn url(&self) -> anyhow::Result<String> {
        let value = self.call("GET", &self.at("/url"), None).await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// The page's text (its `body`'s inner text).
    pub async fn text(&self) -> anyhow::Result<String> {
        let value = self
            .script(
                "return document.body ? document.body.innerText : '';",
                json!([]),
            )
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// Runs a script in the page (synchronously) and returns its result.
    pub async fn script(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs an asynchronous script (its last argument is the callback) and returns its result.
    pub async fn script_async(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.at("/execute/async"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until an element matching the CSS selector is on the page (up to 10 s).
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .call(
                    "POST",
                    &self.at("/element"),
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            match found {
                Ok(element) => {
                    return element[ELEMENT]
                        .as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("no element reference in {element}"));
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => {
                    let url = self.url().await.unwrap_or_default();
                    return Err(error.context(format!("`{css}` not found on {url}")));
                }
            }
        }
    }

    /// Types into the element matching the CSS selector.
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let element = self.wait_for(css).await?;
        self.call(
            "POST",
            &self.at(&format!("/element/{element}/value")),
            Some(json!({"text": text})),
        )
        .await
        .map(drop)
    }

    /// Clicks the element matching the CSS selector.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.wait_for(css).await?;
        self.call(
            "POST",
            &self.at(&format!("/element/{element}/click")),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Waits until the URL starts with `prefix` (up to 10 s); the URL then.
    pub async fn wait_for_url(&self, prefix: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await?;
            if url.starts_with(prefix) {
                return Ok(url);
            }
            if Instant::now() > deadline {
                bail!("the browser is at {url}, not {prefix}… after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cookies the browser holds for the current page's origin, as it stores them.
    pub async fn cookies(&self) -> anyhow::Result<Vec<StoredCookie>> {
        let value = self.call("GET", &self.at("/cookie"), None).await?;
        let text = |cookie: &Value, key: &str| cookie[key].as_str().unwrap_or_default().to_owned();
        Ok(value
            .as_array()
            .map(|cookies| {
                cookies
                    .iter()
                    .map(|cookie| StoredCookie {
                        name: text(cookie, "name"),
                        value: text(cookie, "value"),
                        secure: cookie["secure"].as_bool().unwrap_or(false),
                        http_only: cookie["httpOnly"].as_bool().unwrap_or(false),
                        same_site: text(cookie, "sameSite"),
                        path: text(cookie, "path"),
                        domain: text(cookie, "domain"),
                        expiry: cookie["expiry"].as_u64(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Sets a cookie on the current page's origin (as a script or an attacker on the network
    /// path could): `extra` holds more WebDriver cookie fields.
    pub async fn set_cookie(&self, name: &str, value: &str, extra: Value) -> anyhow::Result<()> {
        let mut cookie = json!({"name": name, "value": value, "path": "/"});
        if let (Some(cookie), Some(extra)) = (cookie.as_object_mut(), extra.as_object()) {
            cookie.extend(extra.clone());
        }
        self.call("POST", &self.at("/cookie"), Some(json!({"cookie": cookie})))
            .await
            .map(drop)
    }

    /// A PNG screenshot of the viewport, written to `file`.
    pub async fn screenshot(&self, file: &Path) -> anyhow::Result<()> {
        use base64::Engine;
        let value = self.call("GET", &self.at("/screenshot"), None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .context("the screenshot is not base64")?;
        std::fs::write(file, png)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromedriver ends its browsers when it is asked to end the session; it is then
        // stopped by its pid whatever happened.
        let _ = Command::new("curl")
            .args(["-s", "-m", "5", "-X", "DELETE"])
            .arg(format!("{}/session/{}", self.base, self.session))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
