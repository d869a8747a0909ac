//! The configured store: one of the backends (`memory.rs`, `redis.rs`) behind one type, each call
//! counted when it fails. A Redis call's future is boxed here (see the crate's summary).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::StateConfig;
use crate::facts::{DAY, ExportLimits, Reservation, ReserveOutcome, StateError};
use crate::memory::MemoryStore;
use crate::recent::RecentChecks;
use crate::records::RecordKind;
use crate::redis::RedisStore;
use crate::tables::Table;

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
    /// Recent answers of limit checks, with Redis (`recent.rs`).
    recent: RecentChecks,
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
            recent: RecentChecks::default(),
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
    /// `window`; otherwise this hit is counted when `record`. With Redis, a check (not `record`)
    /// may be answered from this replica's answers of the last quarter second (`recent.rs`).
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
                // A check is answered from this replica's recent answers (`recent.rs`); a hit
                // goes to Redis and drops the key's recent answer.
                let asked = std::time::Instant::now();
                if !record && let Some(answer) = self.recent.get(key, limit, asked) {
                    return Ok(answer);
                }
                let answer =
                    self.counted(Box::pin(store.limit(key, limit, window, record)).await)?;
                if record {
                    self.recent.forget(key);
                } else {
                    self.recent.put(key, limit, answer, asked);
                }
                Ok(answer)
            }
        }
    }

    /// Keeps a record for `ttl` (replacing one of the same kind and id).
    pub async fn put_record(
        &self,
        kind: RecordKind,
        id: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.records.put(kind, id, value, ttl);
                Ok(())
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.put_record(kind, id, value, ttl)).await)
            }
        }
    }

    /// A record, while it lives.
    pub async fn get_record(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<String>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.records.get(kind, id)),
            Backend::Redis(store) => self.counted(Box::pin(store.get_record(kind, id)).await),
        }
    }

    /// A record, removed as it is read: whoever takes it first has it (on any replica).
    pub async fn take_record(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<String>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.records.take(kind, id)),
            Backend::Redis(store) => self.counted(Box::pin(store.take_record(kind, id)).await),
        }
    }

    /// Removes a record: whether there was one.
    pub async fn delete_record(&self, kind: RecordKind, id: &str) -> Result<bool, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.records.delete(kind, id)),
            Backend::Redis(store) => self.counted(Box::pin(store.delete_record(kind, id)).await),
        }
    }

    /// Notes an identifier as used for `ttl`: `true` the first time, `false` while it is noted.
    pub async fn first_use(
        &self,
        kind: RecordKind,
        id: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.records.first_use(kind, id, ttl)),
            Backend::Redis(store) => self.counted(Box::pin(store.first_use(kind, id, ttl)).await),
        }
    }

    /// Adds a member to an index kept at least `ttl`.
    pub async fn index_add(
        &self,
        index: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.records.index_add(index, member, ttl);
                Ok(())
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.index_add(index, member, ttl)).await)
            }
        }
    }

    /// An index's members, left in place.
    pub async fn index_members(&self, index: &str) -> Result<Vec<String>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.records.index_members(index)),
            Backend::Redis(store) => self.counted(Box::pin(store.index_members(index)).await),
        }
    }

    /// Removes one member from an index.
    pub async fn index_remove(&self, index: &str, member: &str) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.records.index_remove(index, member);
                Ok(())
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.index_remove(index, member)).await)
            }
        }
    }

    /// Takes an index whole: its members, and the index gone.
    pub async fn index_take(&self, index: &str) -> Result<Vec<String>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.records.index_take(index)),
            Backend::Redis(store) => self.counted(Box::pin(store.index_take(index)).await),
        }
    }

    /// Writes a field of a table every replica keeps whole, and tells every replica (they are
    /// notified like a revocation).
    pub async fn table_put(
        &self,
        table: Table,
        field: &str,
        value: &str,
    ) -> Result<(), StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                store.tables.put(table, field, value);
                store.changes().notify_waiters();
                Ok(())
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.table_put(table, field, value)).await)
            }
        }
    }

    /// Removes a field: whether this call removed it (once across replicas).
    pub async fn table_remove(&self, table: Table, field: &str) -> Result<bool, StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                let removed = store.tables.remove(table, field);
                store.changes().notify_waiters();
                Ok(removed)
            }
            Backend::Redis(store) => self.counted(Box::pin(store.table_remove(table, field)).await),
        }
    }

    /// A whole table.
    pub async fn table_all(&self, table: Table) -> Result<HashMap<String, String>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.tables.all(table)),
            Backend::Redis(store) => self.counted(Box::pin(store.table_all(table)).await),
        }
    }

    /// The roles last seen for a subject (as `roles_seen` was given them), if any.
    pub async fn roles_of(&self, subject: &str) -> Result<Option<String>, StateError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.tables.roles_of(subject)),
            Backend::Redis(store) => self.counted(Box::pin(store.roles_of(subject)).await),
        }
    }

    /// Notes `roles` (one string, as the caller writes them) as the subject's, seen in a token
    /// issued at `at` (Unix seconds): the roles before when this changed them — once across
    /// replicas, since the swap is atomic; `None` when they are the same, seen for the first
    /// time, or the token is older than the last one seen.
    pub async fn roles_seen(
        &self,
        subject: &str,
        roles: &str,
        at: u64,
    ) -> Result<Option<String>, StateError> {
        match &self.backend {
            Backend::Memory(store) => {
                Ok(store
                    .tables
                    .roles_seen(subject, roles, at, store.retention()))
            }
            Backend::Redis(store) => {
                self.counted(Box::pin(store.roles_seen(subject, roles, at)).await)
            }
        }
    }
}
