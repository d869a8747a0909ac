//! Test-only helpers: the real parts on free loopback ports — the IdP (`oidc-provider` under
//! node), a headless Chromium driven over WebDriver, Redis, a syslog collector (rsyslogd), an HTTP event collector, the example invoicing
//! API, the gateway binary — each stopped when dropped, and an HTTP client (HTTP/1.1, HTTP/2,
//! TLS) that returns what a user would see.

mod browser;
mod certs;
mod client;
mod collector;
mod dirs;
mod gateway;
mod http_collector;
mod idp;
mod redis;
mod upstream;

pub use browser::{Browser, StoredCookie};
pub use certs::{certificates, client_certificate};
pub use client::{Reply, TlsClient, get, send, send_h2};
pub use collector::Collector;
pub use dirs::{TempDir, free_port, repo_root};
pub use gateway::GatewayProcess;
pub use http_collector::HttpCollector;
pub use idp::{AUDIENCE, Idp, TokenRequest, WEB_CLIENT_ID, b64url_decode, b64url_encode};
pub use redis::{Redis, RedisCluster};
pub use upstream::Upstream;
