//! The invoiceguard server: accepts HTTP/1.1 and HTTP/2 (plain or TLS), runs every request through
//! the phases — normalize, route, authenticate, authorize, forward — writes its audit event, and
//! turns every refusal into one standard answer (`application/problem+json` with the request id).
//! It also gathers each crate's configuration section into the one configuration file.
//!
//! Where things happen: `normalize.rs` (the canonical path and the refusal of ambiguous
//! requests), `body.rs` (the request body's size and time limits), `form_override.rs` (method-override
//! fields in form bodies), `pipeline.rs` (the phases in
//! order), `enrich.rs` (facts for the decision: invoice creator and amount, export quota),
//! `forward.rs` (the upstream call and its headers), `foreign_headers.rs` (other proxies'
//! identity headers, never forwarded), `upstream_pool.rs` (the upstream's
//! connections), `settle.rs` (what the answer proves), `audit_trail.rs` (the event of each
//! request), `error.rs` (classification and the problem answer), `server.rs` (listeners and
//! connections), `head_guard.rs` (HTTP/1.1 heads checked for bare line ends and double framing
//! before hyper parses them), `reload.rs` (the running policy set and its hot reload), `revocation.rs` (who is
//! blocked, on every replica), `admin.rs` (health, readiness, revocations).

mod admin;
mod audit_trail;
#[cfg(feature = "bench")]
pub mod bench;
mod body;
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
mod phases;
mod reload;
mod reservation;
mod revocation;
pub mod runtime;
mod server;
mod tls;
mod trace;
mod upstream;
mod upstream_pool;

pub use body::ClientBody;
pub use config::{
    AdminConfig, Config, ConfigError, LimitsConfig, ListenConfig, TlsFiles, UpstreamConfig,
};
pub use context::Connection;
pub use error::GatewayError;
pub use gateway::{Gateway, StartError};
pub use server::{ServeError, serve};
