//! Audit for invoiceguard: one event per request, allowed or denied — who did what, when, from
//! where, on which resource, what was decided and by which policies, and how it ended. Events are
//! JSON lines with a sequence number and the hash of the previous line (a tamper-evident chain,
//! optionally HMAC-keyed, that [`verify`] checks), appended to a file and optionally echoed to
//! stdout. Audit events are not logs: they are never sampled or dropped, and they never hold a
//! token.

mod chain;
mod config;
mod event;
mod log;
mod ocsf;
mod ship;
mod verify;

pub use chain::{Chain, GENESIS};
pub use config::AuditConfig;
pub use event::{
    Actor, AuditEvent, DecisionRecord, Outcome, RequestRecord, ResourceRecord, ShadowRecord,
    Source, now_rfc3339,
};
pub use log::{AuditError, AuditLog};
pub use ocsf::{OCSF_VERSION, to_ocsf};
pub use ship::{Format, SinkConfig, SinkTls, cursor_path, ship};
pub use verify::{Verification, verify};
