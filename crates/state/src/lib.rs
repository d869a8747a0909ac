//! State for invoiceguard: the facts one request cannot carry — who created each invoice (for
//! segregation of duties), how much each principal has exported in the last day (export limits,
//! reserved before forwarding and settled after), who is revoked (leavers, blocked on every
//! replica), sliding-window counters (brute-force protection and rate limits), and short-lived
//! records every replica must see (browser sessions, logins in progress, identifiers used once),
//! and small tables every replica keeps whole (what the IdP's security events did to a subject,
//! time-limited role grants) with the roles last seen per subject.
//!
//! [`StateStore`] has two backends: `memory` (one process, nothing to install) and `redis`
//! (shared by every replica; atomic Lua scripts, a timeout on every call, revocations announced
//! by pub/sub). A Redis call's future is boxed: the memory backend answers without waiting, and
//! every request's future would otherwise carry room for the largest Redis call (kilobytes,
//! copied each time the request's future is built).

//!
//! Where things are: `store.rs` (the store the gateway calls, over either backend), `facts.rs`
//! (quotas, reservations, the error), `records.rs` (sessions and
//! other records by key), `tables.rs` (lifecycle marks, grants, roles seen), `recent.rs` (limit checks
//! answered again for a quarter second, with Redis), `memory.rs` and `redis.rs` (the backends), `config.rs`.

mod config;
mod facts;
mod memory;
mod recent;
mod records;
mod redis;
mod store;
mod tables;

pub use config::StateConfig;
pub use facts::{ExportLimits, Reservation, ReserveOutcome, StateError};
pub use memory::MemoryStore;
pub use records::RecordKind;
pub use redis::RedisStore;
pub use store::StateStore;
pub use tables::Table;
