//! The invoiceguard server: accepts HTTP/1.1 and HTTP/2 (plain or TLS), runs every request through
//! its phases over one request context, writes its audit event, and turns every refusal into one
//! standard answer (`application/problem+json` with the request id). It also gathers each crate's
//! configuration section into the one configuration file.
//!
//! Where things happen:
//! - a request: `request.rs` (its way in and out), `gateway.rs` (the parts every request shares),
//!   `context.rs` (what is known about one request), `phases/` (one file per phase, run in order by `phases/mod.rs`:
//!   normalize, route, authenticate, limit, enrich, authorize, audit, forward, settle),
//!   `audit_trail.rs` (its audit event, from the context), `error.rs` (classification and the
//!   problem answer);
//! - the gateway's own endpoints (`/.invoiceguard/…`, never forwarded): `own/` (one file per
//!   endpoint: login, callback, session, logout, back-channel logout, export approvals), and
//!   `browser.rs` (a browser's session on a routed request: resumed, CSRF-checked, or sent to
//!   log in); `approvals.rs` (four eyes on exports: requests, approvals, spending one) and
//!   `approval_webhook.rs` (new requests posted to the approvers' hook);
//! - joiners, movers and leavers: `ssf.rs` (the IdP's security events — Shared Signals, CAEP,
//!   RISC — received and acted on), `lifecycle.rs` (what they asked of a subject, time-limited
//!   role grants, role changes seen), `admin_grants.rs` (grants given, listed and lifted at the
//!   admin listener);
//! - what the phases use: `canonical_path.rs` (the one reading of a request line and its headers),
//!   `body.rs` (the request body's size and time limits), `form_override.rs` (method-override
//!   fields in form bodies), `reservation.rs` (an export's held rows), `revocation.rs` (who is
//!   blocked, on every replica), `reload.rs` (the running policy set and its hot reload),
//!   `upstream.rs` (the upstream call and the headers it gets), `headers.rs` (the header names
//!   the gateway sets and reads), `foreign_headers.rs` (other proxies' identity headers, never
//!   forwarded), `upstream_pool.rs` (the upstream's connections), `trace.rs` (W3C trace context);
//! - around them: `server.rs` (listeners and connections), `head_guard.rs` (HTTP/1.1 heads checked
//!   for bare line ends and double framing before hyper parses them), `tls.rs`, `admin.rs`
//!   (health, readiness, revocations), `admin_token.rs`, `credentials.rs` (credentials reloaded
//!   without a restart),
//!   `config.rs`.

mod admin;
mod admin_grants;
mod admin_token;
mod approval_webhook;
mod approvals;
mod audit_trail;
#[cfg(feature = "bench")]
pub mod bench;
mod body;
mod browser;
mod canonical_path;
mod config;
mod context;
mod credentials;
mod error;
mod foreign_headers;
mod form_override;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod gateway;
mod head_guard;
mod headers;
mod lifecycle;
mod own;
mod phases;
mod reload;
mod request;
mod reservation;
mod revocation;
pub mod runtime;
mod server;
mod ssf;
mod tls;
mod trace;
mod upstream;
mod upstream_pool;
mod watermark;

pub use body::ClientBody;
pub use config::{
    AdminConfig, ApprovalsConfig, Config, ConfigError, LimitsConfig, ListenConfig, TlsFiles,
    UpstreamConfig,
};
pub use context::Connection;
pub use error::{GatewayError, LoginRedirect, Throttle};
pub use gateway::{Gateway, StartError};
pub use server::{ServeError, serve};
pub use ssf::SsfConfig;
pub use watermark::find_mark;
