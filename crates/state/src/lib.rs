//! State for invoiceguard: the facts one request cannot carry — who created each invoice (for
//! segregation of duties), how much each principal has exported in the last day (export limits,
//! reserved before forwarding and settled after), who is revoked (leavers, blocked on every
//! replica), and sliding-window counters (brute-force protection and rate limits).
//!
//! [`StateStore`] has two backends: `memory` (one process, nothing to install) and `redis`
//! (shared by every replica; atomic Lua scripts, a timeout on every call, revocations announced
//! by pub/sub). A Redis call's future is boxed: the memory backend answers without waiting, and
//! every request's future would otherwise carry room for the largest Redis call (kilobytes,
//! copied each time the request's future is built).

mod config;
mod memory;
mod redis;

pub use config::StateConfig;
pub use memory::MemoryStore;
pub use redis::RedisStore;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The rolling window of export quotas.
pub(crate) const DAY: Duration = Duration::from_secs(86_400);

/// The limits of one principal's exports over a rolling day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Rows per rolling 24 hours.
    pub rows_per_day: u64,
    /// Exports per rolling 24 hours.
    pub exports_per_day: u64,
}

/// Rows held for one export between its authorization and its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Whose quota.
    pub principal: String,
    /// The reservation's id.
    pub id: u64,
    /// Rows held.
    pub rows: u64,
}

/// The outcome of asking for rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// The rows are held.
    Reserved(Reservation),
    /// Holding them would pass a limit; nothing is held.
    OverLimit {
        /// Rows already used or held in the window.
        rows_used: u64,
        /// Exports already made or held in the window.
        exports_used: u64,
    },
}

/// A fact could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store cannot be reached, or did not answer in time.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// The configured backend.
enum Backend {
    /// In this process only.
    Memory(MemoryStore),
    /// In Redis, shared by every replica.
    Redis(RedisStore),
}

/// The configured store, and how often it failed.
pub struct StateStore {
    backend: Backend,
    errors: std::sync::atomic::AtomicU64,
}

impl StateStore {
    /// Opens the configured backend. Redis is connected lazily: a server that is down at start
    /// only makes its facts unavailable until it is up.
    pub fn open(config: &StateConfig) -> Result<Self, StateError> {
        let backend = match config.backend.as_str() {
            "redis" => Backend::Redis(RedisStore::open(config)?),
            _ => Backend::Memory(MemoryStore::new(Duration::from_secs(
                config.ownership_retention_days * 86_400,
            ))),
        };
        Ok(Self {
            backend,
            errors: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// `memory` or `redis`.
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// How many calls to the store have failed since the start.
    pub fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn counted<T>(&self, result: Result<T, StateError>) -> Result<T, StateError> {
        if result.is_err() {
            self.errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            invoiceguard_telemetry::metrics().state_errors.inc();
        }
        result
    }

    /// Whether the store answers (always, in memory).
    pub async fn ping(&self) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(store) => self.counted(Box::pin(store.ping()).await),
        }
    }

    /// Records who created an invoice.
    pub async fn record_owner(&self, invoice: &str, creator: &str) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.record_owner(invoice, creator);
                Ok(())
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.record_owner(invoice, creator)).await)
            }
        }
    }

    /// Who created an invoice, when the gateway saw it created.
    pub async fn owner(&self, invoice: &str) -> Result<Option<String>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.owner(invoice)),
            Backend::Redis(store) => self.counted(Box::pin(store.owner(invoice)).await),
        }
    }

    /// Atomically holds `rows` of `principal`'s daily export quota (all that is left when `None`),
    /// or refuses.
    pub async fn reserve_export(
        &self,
        principal: &str,
        rows: Option<u64>,
        limits: ExportLimits,
    ) -> Result<ReserveOutcome, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.reserve_export(principal, rows, limits)),
            Backend::Redis(store) => {
                self.counted(Box::pin(store.reserve_export(principal, rows, limits, DAY)).await)
            }
        }
    }

    /// Replaces a reservation by the rows actually exported.
    pub async fn settle_export(
        &self,
        reservation: &Reservation,
        rows: u64,
    ) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.settle_export(reservation, rows);
                Ok(())
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.settle_export(reservation, Some(rows))).await)
            }
        }
    }

    /// Gives a reservation back (the export was refused or failed).
    pub async fn release_export(&self, reservation: &Reservation) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.release_export(reservation);
                Ok(())
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.settle_export(reservation, None)).await)
            }
        }
    }

    /// Revokes a subject until a Unix time (0: for good), and tells every replica.
    pub async fn revoke(&self, subject: &str, until_unix: u64) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.revoke(subject, until_unix);
                Ok(())
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.revoke(subject, until_unix)).await)
            }
        }
    }

    /// Lifts a revocation, and tells every replica.
    pub async fn lift(&self, subject: &str) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.lift(subject);
                Ok(())
            }
            Backend::Redis(store) => self.counted(Box::pin(store.lift(subject)).await),
        }
    }

    /// Every revocation: subject → until (Unix seconds, 0 for good).
    pub async fn revocations(&self) -> Result<HashMap<String, u64>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.revocations()),
            Backend::Redis(store) => self.counted(Box::pin(store.revocations()).await),
        }
    }

    /// Notified when revocations change, on this replica or (Redis) any other.
    pub fn revocation_changes(&self) -> Arc<Notify> {
        match &self.backend {
            Backend::Memory(store) => store.changes(),
            Backend::Redis(store) => store.changes(),
        }
    }

    /// A sliding-window limit on `key`: `Some(wait)` when it already has `limit` hits within
    /// `window`; otherwise this hit is counted when `record`.
    pub async fn limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        record: bool,
    ) -> Result<Option<Duration>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.limit(key, limit, window, record)),
            Backend::Redis(store) => {
                self.counted(Box::pin(store.limit(key, limit, window, record)).await)
            }
        }
    }
}
