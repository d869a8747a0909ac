//! Audit for invoiceguard: one event per request, allowed or denied — who did what, when, from
//! where, on which resource, what was decided and by which policies, and how it ended. Events are
//! redacted, numbered and chained (each carries the hash of the previous line, optionally
//! HMAC-keyed, which [`verify`] checks), appended to a durable spool of segment files
//! ([`AuditLog`]), and shipped from there by each sink with its own cursor — syslog, HTTP or a
//! file — at least once. Audit events are not logs: they are never sampled or dropped, and they
//! never hold a token. At rest, segments may be sealed (AES-256-GCM, a data key per segment
//! wrapped by a configured key: `at_rest.rs`); delivered segments may be kept as signed,
//! compressed archives instead of deleted (`archive.rs`), verified, restored and shipped again.

pub mod archive;
pub mod at_rest;
mod chain;
mod config;
mod event;
mod log;
mod ocsf;
pub mod query;
mod redact;
mod sinks;
mod spool;
mod verify;

pub use chain::{Chain, GENESIS};
pub use config::AuditConfig;
pub use event::{
    Actor, AuditEvent, DECISION_INPUTS_VERSION, DecisionInputs, DecisionRecord, ExportDelivery,
    GrantUse, LifecycleRecord, Outcome, RequestRecord, ResourceRecord, ShadowRecord, Source,
    now_rfc3339,
};
pub use log::{AuditError, AuditLog};
pub use ocsf::{OCSF_VERSION, to_ocsf};
pub use redact::{Mode as RedactMode, RedactConfig, Redactor};
pub use sinks::{Format, SinkConfig, SinkTls, ship_folder};
pub use spool::{Cursor, cursor_path, read_cursor, segments};
pub use verify::{
    Anchor, TrailCheck, Verification, cursor_problems, spool_anchor, verify, verify_trails,
};
