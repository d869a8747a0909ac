//! The configuration file: one TOML file whose sections belong to the crates that read them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use invoiceguard_audit::AuditConfig;
use invoiceguard_authn::AuthnConfig;
use invoiceguard_policy::PolicyConfig;
use invoiceguard_state::StateConfig;
use invoiceguard_telemetry::TelemetryConfig;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where clients connect.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The invoicing API behind the gateway.
    pub upstream: UpstreamConfig,
    /// The IdP and what its tokens must say.
    pub authn: AuthnConfig,
    /// The policy folder.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Where audit events go.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Where facts that outlive a request are kept.
    #[serde(default)]
    pub state: StateConfig,
    /// The admin listener: health, readiness, revocations.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Brute-force protection.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logs and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Browser sessions (OpenID Connect login at the gateway); off when absent.
    #[serde(default)]
    pub session: Option<invoiceguard_session::SessionConfig>,
    /// Four eyes on exports: how long requests and approvals live.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// The IdP's security events (OpenID Shared Signals: CAEP and RISC); off when absent.
    #[serde(default)]
    pub ssf: Option<crate::ssf::SsfConfig>,
    /// The file this configuration was read from (its credentials are reloaded from it).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Export requests waiting for another person's approval (`policies/approvals.cedar`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// Seconds an export request waits for an approver, and an approval for its export
    /// (default 86400: a working day and a night).
    #[serde(default = "default_approvals_ttl")]
    pub ttl_s: u64,
    /// Where each new export request is posted as JSON (the approvers' chat or ticketing hook).
    #[serde(default)]
    pub webhook: Option<String>,
    /// A file holding the webhook's `Authorization` header value.
    #[serde(default)]
    pub webhook_auth_header_file: Option<PathBuf>,
}

fn default_approvals_ttl() -> u64 {
    86_400
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            ttl_s: default_approvals_ttl(),
            webhook: None,
            webhook_auth_header_file: None,
        }
    }
}

/// The admin listener: a separate address, never the public one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address and port; the admin listener is off when absent.
    pub address: Option<SocketAddr>,
    /// A file holding the bearer token that the revocation endpoints require; without it they
    /// answer 403.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: Some(SocketAddr::from(([127, 0, 0, 1], 9901))),
            token_file: None,
        }
    }
}

/// Brute-force protection (failed authentications counted per source address and per claimed
/// subject over a sliding window; past the limit, 429 with `Retry-After`), and the size and
/// concurrency limits of requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Failed authentications allowed per source address in the window.
    #[serde(default = "default_failed_per_ip")]
    pub failed_auth_per_ip: u64,
    /// Failed authentications allowed per claimed subject in the window.
    #[serde(default = "default_failed_per_subject")]
    pub failed_auth_per_subject: u64,
    /// The window, in seconds.
    #[serde(default = "default_failed_window_s")]
    pub failed_auth_window_s: u64,
    /// The largest request body, in bytes; a longer one is refused with 413 (before it is
    /// forwarded when `Content-Length` says so, or cut off mid-stream).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Requests handled at once by this gateway; more are refused with 503 and `Retry-After`.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            failed_auth_per_ip: default_failed_per_ip(),
            failed_auth_per_subject: default_failed_per_subject(),
            failed_auth_window_s: default_failed_window_s(),
            max_body_bytes: default_max_body_bytes(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

fn default_failed_per_ip() -> u64 {
    30
}

fn default_failed_per_subject() -> u64 {
    10
}

fn default_failed_window_s() -> u64 {
    60
}

fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}

fn default_max_in_flight() -> usize {
    1024
}

/// The public listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Address and port, e.g. `0.0.0.0:8443`.
    #[serde(default = "default_listen")]
    pub address: SocketAddr,
    /// Serve TLS with this certificate and key; plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// With TLS: CA certificates (PEM) that sign integration accounts' client certificates. A
    /// client certificate is then asked for, but not required (users come with tokens).
    pub client_ca_file: Option<PathBuf>,
    /// Time allowed for a client to send a request's headers, in milliseconds.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Longest pause allowed between two chunks of a request body, in milliseconds (then 408).
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Longest time for a whole request body, from its first byte read, in milliseconds (then
    /// 408, recorded as the client's doing). Below `upstream.timeout_ms`, so that a body trickled
    /// slowly is never reported as the upstream's timeout; by default 20 s, or three quarters of
    /// `upstream.timeout_ms` when that is less.
    pub body_deadline_ms: Option<u64>,
    /// The host names the gateway answers for (`Host`, or HTTP/2's `:authority`, without the
    /// port; compared without case). A request naming another host gets 421 and is audited.
    /// Empty: any host (not recommended where the upstream builds links from the host).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Open client connections at most; more are closed as soon as they are accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open client connections at most from one IP address.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// On SIGTERM, how long in-flight requests may take to finish, in seconds.
    #[serde(default = "default_drain_timeout_s")]
    pub drain_timeout_s: u64,
    /// Threads serving requests: 0 for one per CPU the process may use (its affinity and cgroup
    /// quota), 1 for a single-threaded runtime (what 0 gives on one CPU: the same work without
    /// the cost of sharing tasks between threads).
    #[serde(default)]
    pub worker_threads: usize,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// The invoicing API the gateway protects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Its base URL, `http://` or `https://`; a path here is prefixed to every forwarded path.
    pub url: String,
    /// Time allowed for the upstream's response head, in milliseconds (then 504).
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// CA certificates (PEM) that sign an `https` upstream's certificate; the system's roots
    /// when absent.
    pub ca_file: Option<PathBuf>,
    /// Pass the caller's `Authorization` header on to the upstream. Off by default: the upstream
    /// learns the caller from the verified `x-invoiceguard-*` headers instead.
    #[serde(default)]
    pub forward_authorization: bool,
    /// A client certificate (PEM chain and key) the gateway presents to an `https` upstream
    /// that asks for one (mTLS to the ERP).
    pub client_cert: Option<TlsFiles>,
    /// More client headers never forwarded, beside the documented families of other proxies'
    /// identity and forwarding headers (docs/security.md): names, or prefixes ending in `*`.
    #[serde(default)]
    pub remove_headers: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_header_timeout_ms() -> u64 {
    10_000
}

fn default_body_timeout_ms() -> u64 {
    10_000
}

/// The longest `listen.body_deadline_ms` chosen when none is set.
const DEFAULT_BODY_DEADLINE_MS: u64 = 20_000;

impl Config {
    /// The whole-body deadline in force: `listen.body_deadline_ms`, or 20 s, or three quarters of
    /// `upstream.timeout_ms` when that is less.
    pub fn body_deadline_ms(&self) -> u64 {
        self.listen
            .body_deadline_ms
            .unwrap_or_else(|| DEFAULT_BODY_DEADLINE_MS.min(self.upstream.timeout_ms / 4 * 3))
            .max(1)
    }
}

fn default_max_connections() -> usize {
    10_000
}

fn default_max_connections_per_ip() -> usize {
    512
}

/// The most threads `listen.worker_threads` may ask for.
const MAX_WORKER_THREADS: usize = 1024;

fn default_drain_timeout_s() -> u64 {
    30
}

fn default_upstream_timeout_ms() -> u64 {
    30_000
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: default_listen(),
            tls: None,
            client_ca_file: None,
            header_timeout_ms: default_header_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            body_deadline_ms: None,
            hosts: Vec::new(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            drain_timeout_s: default_drain_timeout_s(),
            worker_threads: 0,
        }
    }
}

/// The configuration could not be used; every problem is listed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or keys are unknown or of the wrong type: each problem as
    /// `line:column: key: what`.
    #[error("{}", .problems.iter().map(|p| format!("{}:{p}", .path.display())).collect::<Vec<_>>().join("\n"))]
    Parse {
        /// The file.
        path: PathBuf,
        /// `line:column: key: what` lines.
        problems: Vec<String>,
    },
    /// Values that parse but cannot work, each named by its key.
    #[error("{}", .problems.iter().map(|p| format!("{}: {p}", .path.display())).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `key: problem` lines.
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file. Relative paths in it are taken from the
    /// file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Config = match toml::from_str(&text) {
            Ok(config) => config,
            Err(error) => return Err(structural_problems(path, &text, &error)),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.source = Some(path.to_owned());
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.policy.dir);
        if let Some(shadow) = &mut self.policy.shadow_dir {
            resolve(shadow);
        }
        resolve(&mut self.audit.spool);
        if let Some(tls) = &mut self.listen.tls {
            resolve(&mut tls.cert_file);
            resolve(&mut tls.key_file);
        }
        if let Some(ca) = &mut self.upstream.ca_file {
            resolve(ca);
        }
        if let Some(client) = &mut self.upstream.client_cert {
            resolve(&mut client.cert_file);
            resolve(&mut client.key_file);
        }
        if let Some(ca) = &mut self.listen.client_ca_file {
            resolve(ca);
        }
        self.authn.resolve_paths(base);
        self.state.resolve_paths(base);
        if let Some(session) = &mut self.session {
            session.resolve_paths(base);
        }
        if let Some(file) = &mut self.approvals.webhook_auth_header_file {
            resolve(file);
        }
        if let Some(ssf) = &mut self.ssf {
            ssf.resolve_paths(base);
        }
        if let Some(token) = &mut self.admin.token_file {
            resolve(token);
        }
        if let Some(key) = &mut self.audit.hmac_key_file {
            resolve(key);
        }
        for sink in &mut self.audit.sinks {
            if let Some(ca) = sink.tls.as_mut().and_then(|tls| tls.ca_file.as_mut()) {
                resolve(ca);
            }
            if let Some(file) = &mut sink.file {
                resolve(file);
            }
            if let Some(secret) = &mut sink.auth_header_file {
                resolve(secret);
            }
        }
    }

    /// Every problem of every section, as `key: problem`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.validate_upstream(&mut problems);
        self.validate_listen(&mut problems);
        self.validate_files(&mut problems);
        if self.listen.client_ca_file.is_some() && self.listen.tls.is_none() {
            problems
                .push("listen.client_ca_file: client certificates need `listen.tls`".to_owned());
        }
        if !self.authn.mtls_accounts.is_empty() && self.listen.client_ca_file.is_none() {
            problems.push("authn.mtls_accounts: needs `listen.client_ca_file`".to_owned());
        }
        if !self.policy.dir.is_dir() {
            problems.push(format!(
                "policy.dir: `{}` is not a folder",
                self.policy.dir.display()
            ));
        }
        problems.extend(self.authn.validate());
        problems.extend(self.audit.validate());
        problems.extend(self.telemetry.validate());
        problems.extend(self.state.validate());
        if !(1..=7 * 86_400).contains(&self.approvals.ttl_s) {
            problems.push(format!(
                "approvals.ttl_s: {} is outside 1..=604800 seconds",
                self.approvals.ttl_s
            ));
        }
        if let Some(webhook) = &self.approvals.webhook
            && !matches!(
                webhook
                    .parse::<http::Uri>()
                    .ok()
                    .as_ref()
                    .and_then(http::Uri::scheme_str),
                Some("http" | "https")
            )
        {
            problems.push(format!(
                "approvals.webhook: `{webhook}` is not an http(s) URL"
            ));
        }
        if let Some(ssf) = &self.ssf {
            problems.extend(ssf.validate());
        }
        if let Some(session) = &self.session {
            problems.extend(session.validate());
            let issuers = self.authn.issuers();
            if let Some(issuer) = &session.issuer
                && !issuers.iter().any(|known| &known.issuer == issuer)
            {
                problems.push(format!(
                    "session.issuer: `{issuer}` is not one of authn's issuers"
                ));
            }
        }
        if self
            .admin
            .address
            .is_some_and(|admin| admin == self.listen.address)
        {
            problems.push("admin.address: must not be the public listener's address".to_owned());
        }
        let limits = &self.limits;
        for (key, value) in [
            ("failed_auth_per_ip", limits.failed_auth_per_ip),
            ("failed_auth_per_subject", limits.failed_auth_per_subject),
            ("failed_auth_window_s", limits.failed_auth_window_s),
            ("max_body_bytes", limits.max_body_bytes),
            ("max_in_flight", limits.max_in_flight as u64),
        ] {
            if value == 0 {
                problems.push(format!("limits.{key}: must be at least 1"));
            }
        }
        problems
    }

    fn validate_upstream(&self, problems: &mut Vec<String>) {
        match self.upstream.url.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some() =>
            {
                if uri.query().is_some() {
                    problems.push(format!(
                        "upstream.url: `{}` must not have a query",
                        self.upstream.url
                    ));
                }
            }
            _ => problems.push(format!(
                "upstream.url: `{}` is not an http(s) URL",
                self.upstream.url
            )),
        }
        if self.upstream.timeout_ms == 0 {
            problems.push("upstream.timeout_ms: must be at least 1".to_owned());
        }
        problems.extend(crate::foreign_headers::validate(
            &self.upstream.remove_headers,
        ));
        if self.upstream.client_cert.is_some() && !self.upstream.url.starts_with("https://") {
            problems.push("upstream.client_cert: needs an https `upstream.url`".to_owned());
        }
    }

    fn validate_listen(&self, problems: &mut Vec<String>) {
        for (key, value) in [
            ("header_timeout_ms", self.listen.header_timeout_ms),
            ("body_timeout_ms", self.listen.body_timeout_ms),
            ("max_connections", self.listen.max_connections as u64),
            (
                "max_connections_per_ip",
                self.listen.max_connections_per_ip as u64,
            ),
        ] {
            if value == 0 {
                problems.push(format!("listen.{key}: must be at least 1"));
            }
        }
        match self.listen.body_deadline_ms {
            Some(0) => problems.push("listen.body_deadline_ms: must be at least 1".to_owned()),
            Some(deadline) if deadline >= self.upstream.timeout_ms => problems.push(format!(
                "listen.body_deadline_ms: must be less than `upstream.timeout_ms` ({}), or a slow \
                 client's body would be reported as the upstream's timeout",
                self.upstream.timeout_ms
            )),
            _ => {}
        }
        for (index, host) in self.listen.hosts.iter().enumerate() {
            let bracketed = host.starts_with('[') && host.ends_with(']');
            let valid = !host.is_empty()
                && (bracketed || !host.contains(':'))
                && host.parse::<http::uri::Authority>().is_ok();
            if !valid {
                problems.push(format!(
                    "listen.hosts[{index}]: `{host}` is not a host name (give it without scheme or port)"
                ));
            }
        }
        if self.listen.worker_threads > MAX_WORKER_THREADS {
            problems.push(format!(
                "listen.worker_threads: at most {MAX_WORKER_THREADS} (0: one per CPU)"
            ));
        }
    }

    /// Every file `serve` reads, opened and read here as `serve` will (by the same user: the
    /// systemd unit runs `check` before `serve`), so `check` fails wherever `serve` would; the
    /// TLS settings built from them; the spool's folder written.
    fn validate_files(&self, problems: &mut Vec<String>) {
        let mut unreadable = false;
        for (key, file) in self.files_read() {
            if let Some(problem) = unreadable_file(&file) {
                unreadable = true;
                problems.push(format!("{key}: {problem}"));
            }
        }
        if let Some(token) = &self.admin.token_file
            && std::fs::read_to_string(token).is_ok_and(|t| t.trim().is_empty())
        {
            problems.push(format!(
                "admin.token_file: `{}` is empty (no admin token: revocations would be refused)",
                token.display()
            ));
        }
        if !unreadable {
            if let Some(tls) = &self.listen.tls
                && let Err(error) = crate::tls::server_config(
                    &tls.cert_file,
                    &tls.key_file,
                    self.listen.client_ca_file.as_deref(),
                )
            {
                problems.push(format!("listen.tls: {error}"));
            }
            if self.upstream.url.starts_with("https://")
                && let Err(error) = crate::tls::client_config(
                    self.upstream.ca_file.as_deref(),
                    self.upstream
                        .client_cert
                        .as_ref()
                        .map(|c| (c.cert_file.as_path(), c.key_file.as_path())),
                )
            {
                problems.push(format!("upstream: {error}"));
            }
        }
        if let Some(problem) = unwritable_folder(&self.audit.spool) {
            problems.push(format!("audit.spool: {problem}"));
        }
    }
}

impl Config {
    /// Every file `serve` reads at start, with its key.
    fn files_read(&self) -> Vec<(String, PathBuf)> {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        let mut add = |key: &str, file: Option<&PathBuf>| {
            if let Some(file) = file {
                files.push((key.to_owned(), file.clone()));
            }
        };
        if let Some(tls) = &self.listen.tls {
            add("listen.tls.cert_file", Some(&tls.cert_file));
            add("listen.tls.key_file", Some(&tls.key_file));
        }
        add("listen.client_ca_file", self.listen.client_ca_file.as_ref());
        add("upstream.ca_file", self.upstream.ca_file.as_ref());
        if let Some(client) = &self.upstream.client_cert {
            add("upstream.client_cert.cert_file", Some(&client.cert_file));
            add("upstream.client_cert.key_file", Some(&client.key_file));
        }
        add("admin.token_file", self.admin.token_file.as_ref());
        if let Some(ssf) = &self.ssf {
            for (key, file) in ssf.files() {
                add(key, Some(&file));
            }
        }
        // The roles file, the state store's, the sinks' and the audit key: their sections'
        // `validate` reads them.
        files
    }
}

/// Why a file cannot be read by this process, if it cannot: it is missing, a folder, or not
/// readable by this user (opened and read, as `serve` does).
fn unreadable_file(path: &Path) -> Option<String> {
    use std::io::Read;
    if path.is_dir() {
        return Some(format!("`{}` is a folder, not a file", path.display()));
    }
    match std::fs::File::open(path).and_then(|mut file| file.read(&mut [0u8; 1])) {
        Ok(_) => None,
        Err(error) => Some(format!("cannot read `{}`: {error}", path.display())),
    }
}

/// Why this process could not keep the audit spool in `folder`, if it could not: the folder (or
/// the nearest one above that exists, where it would be created) does not take a new file.
fn unwritable_folder(folder: &Path) -> Option<String> {
    let mut existing = folder;
    while !existing.exists() {
        existing = match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if existing == Path::new(".") {
            break;
        }
    }
    if !existing.is_dir() {
        return Some(format!("`{}` is not a folder", existing.display()));
    }
    let probe = existing.join(format!(".invoiceguard-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(error) => Some(format!(
            "cannot create files in `{}`: {error}",
            existing.display()
        )),
    }
}

/// The most structural problems (TOML syntax, unknown keys, wrong types) reported at once.
const MAX_STRUCTURAL: usize = 20;

/// Every structural problem of a file that does not parse, not only the first: each one's line is
/// set aside and the file parsed again, up to [`MAX_STRUCTURAL`]. Each is named by its line,
/// column and key (`section.key`, from the line and the table above it).
fn structural_problems(path: &Path, text: &str, first: &toml::de::Error) -> ConfigError {
    let mut problems: Vec<String> = Vec::new();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut error = Some(first.clone());
    while let Some(found) = error.take() {
        let current = lines.join("\n");
        let Some(span) = found.span() else {
            problems.push(format!("1:1: {}", found.message().trim()));
            break;
        };
        let (line, column) = line_column(&current, span.start);
        let key = key_at(&lines, line);
        problems.push(match key {
            Some(key) => format!("{line}:{column}: {key}: {}", found.message().trim()),
            None => format!("{line}:{column}: {}", found.message().trim()),
        });
        // A problem in a table's header, or one the file's end names: nothing more to learn.
        let Some(bad) = lines
            .get_mut(line - 1)
            .filter(|l| !l.trim_start().starts_with('['))
        else {
            break;
        };
        if bad.trim().is_empty() || problems.len() >= MAX_STRUCTURAL {
            break;
        }
        *bad = String::new();
        error = toml::from_str::<Config>(&lines.join("\n")).err();
    }
    ConfigError::Parse {
        path: path.to_owned(),
        problems,
    }
}

/// The key a line sets, with the table it is in: `listen.max_connections`, `audit.sinks.name`.
fn key_at(lines: &[String], line: usize) -> Option<String> {
    let text = lines.get(line.checked_sub(1)?)?.trim();
    let (key, _) = text.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let table = lines[..line - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("[[")
            .and_then(|t| t.strip_suffix("]]"))
            .or_else(|| l.strip_prefix('[').and_then(|t| t.strip_suffix(']')))
            .map(str::trim)
    });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
