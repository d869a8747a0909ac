//! The in-process store: one mutex per kind of fact, so every operation is atomic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::facts::DAY;
use crate::{ExportLimits, Reservation, ReserveOutcome};

/// One export counted against a quota: reserved, then settled to what was exported.
#[derive(Debug, Clone)]
struct ExportEntry {
    id: u64,
    at: Instant,
    rows: u64,
}

#[derive(Default)]
struct Exports {
    next_id: u64,
    by_principal: HashMap<String, VecDeque<ExportEntry>>,
}

/// Who created each invoice, and when; records past the retention are dropped when the map has
/// doubled since they were last looked for (not at every insert: that cost grew with the map).
struct Owners {
    by_invoice: HashMap<String, (String, Instant)>,
    prune_at: usize,
}

/// Facts in this process's memory.
pub struct MemoryStore {
    retention: Duration,
    owners: Mutex<Owners>,
    exports: Mutex<Exports>,
    revoked: Mutex<HashMap<String, u64>>,
    limits: Mutex<HashMap<String, VecDeque<Instant>>>,
    changes: Arc<Notify>,
    /// Sessions, logins in progress, identifiers used once.
    pub(crate) records: crate::records::MemoryRecords,
    /// Lifecycle marks, grants, roles seen.
    pub(crate) tables: crate::tables::MemoryTables,
}

impl MemoryStore {
    /// An empty store keeping ownership records for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention,
            owners: Mutex::new(Owners {
                by_invoice: HashMap::new(),
                prune_at: 1024,
            }),
            exports: Mutex::new(Exports::default()),
            revoked: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
            changes: Arc::new(Notify::new()),
            records: crate::records::MemoryRecords::default(),
            tables: crate::tables::MemoryTables::default(),
        }
    }

    /// How long ownership records (and roles seen) are kept.
    pub(crate) fn retention(&self) -> Duration {
        self.retention
    }

    pub(crate) fn changes(&self) -> Arc<Notify> {
        self.changes.clone()
    }

    pub(crate) fn revoke(&self, subject: &str, until_unix: u64) {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subject.to_owned(), until_unix);
        self.changes.notify_waiters();
    }

    pub(crate) fn lift(&self, subject: &str) {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(subject);
        self.changes.notify_waiters();
    }

    pub(crate) fn revocations(&self) -> HashMap<String, u64> {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A sliding-window limit: `Some(wait)` when `key` already has `limit` hits in the window;
    /// otherwise the hit is counted when `record`.
    pub(crate) fn limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        record: bool,
    ) -> Option<Duration> {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if limits.len() > 100_000 {
            limits.retain(|_, hits| {
                hits.back()
                    .is_some_and(|at| now.duration_since(*at) < window)
            });
        }
        let hits = limits.entry(key.to_owned()).or_default();
        while hits
            .front()
            .is_some_and(|at| now.duration_since(*at) >= window)
        {
            hits.pop_front();
        }
        if hits.len() as u64 >= limit {
            let oldest = hits.front().copied().unwrap_or(now);
            return Some(
                (oldest + window)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        if record {
            hits.push_back(now);
        }
        None
    }

    pub(crate) fn record_owner(&self, invoice: &str, creator: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.by_invoice.len() >= owners.prune_at {
            let retention = self.retention;
            owners
                .by_invoice
                .retain(|_, (_, at)| at.elapsed() < retention);
            owners.prune_at = (owners.by_invoice.len() * 2).max(1024);
        }
        owners
            .by_invoice
            .insert(invoice.to_owned(), (creator.to_owned(), Instant::now()));
    }

    pub(crate) fn owner(&self, invoice: &str) -> Option<String> {
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners
            .by_invoice
            .get(invoice)
            .filter(|(_, at)| at.elapsed() < self.retention)
            .map(|(creator, _)| creator.clone())
    }

    pub(crate) fn reserve_export(
        &self,
        principal: &str,
        rows: Option<u64>,
        limits: ExportLimits,
    ) -> ReserveOutcome {
        let mut exports = self.exports.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entries = exports
            .by_principal
            .entry(principal.to_owned())
            .or_default();
        while entries
            .front()
            .is_some_and(|e| now.duration_since(e.at) >= DAY)
        {
            entries.pop_front();
        }
        let rows_used: u64 = entries.iter().map(|e| e.rows).sum();
        let exports_used = entries.len() as u64;
        let left = limits.rows_per_day.saturating_sub(rows_used);
        let rows = rows.unwrap_or(left);
        if exports_used + 1 > limits.exports_per_day || rows > left || (rows == 0 && left == 0) {
            return ReserveOutcome::OverLimit {
                rows_used,
                exports_used,
            };
        }
        exports.next_id += 1;
        let id = exports.next_id;
        exports
            .by_principal
            .entry(principal.to_owned())
            .or_default()
            .push_back(ExportEntry { id, at: now, rows });
        ReserveOutcome::Reserved(Reservation {
            principal: principal.to_owned(),
            id,
            rows,
        })
    }

    pub(crate) fn settle_export(&self, reservation: &Reservation, rows: u64) {
        self.settle_or_release(reservation, Some(rows));
    }

    pub(crate) fn release_export(&self, reservation: &Reservation) {
        self.settle_or_release(reservation, None);
    }

    fn settle_or_release(&self, reservation: &Reservation, rows: Option<u64>) {
        let mut exports = self.exports.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entries) = exports.by_principal.get_mut(&reservation.principal) else {
            return;
        };
        match rows {
            Some(rows) => {
                if let Some(entry) = entries.iter_mut().find(|e| e.id == reservation.id) {
                    entry.rows = rows;
                }
            }
            None => entries.retain(|e| e.id != reservation.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ExportLimits = ExportLimits {
        rows_per_day: 1000,
        exports_per_day: 3,
    };

    fn reserve(store: &MemoryStore, rows: u64) -> Option<Reservation> {
        match store.reserve_export("carol", Some(rows), LIMITS) {
            ReserveOutcome::Reserved(r) => Some(r),
            ReserveOutcome::OverLimit { .. } => None,
        }
    }

    #[test]
    fn reservations_never_pass_the_limits() {
        let store = MemoryStore::new(DAY);
        let a = reserve(&store, 600).unwrap();
        assert!(reserve(&store, 600).is_none(), "600 + 600 > 1000");
        store.settle_export(&a, 100);
        let b = reserve(&store, 600).unwrap();
        assert!(reserve(&store, 301).is_none());
        store.release_export(&b);
        let _c = reserve(&store, 800).unwrap();
        assert!(reserve(&store, 101).is_none(), "100 + 800 + 101 > 1000");
        let _d = reserve(&store, 100).unwrap();
        assert!(reserve(&store, 0).is_none(), "three exports a day at most");
    }

    #[test]
    fn an_unbounded_request_reserves_what_is_left() {
        let store = MemoryStore::new(DAY);
        let _a = reserve(&store, 300).unwrap();
        let ReserveOutcome::Reserved(rest) = store.reserve_export("carol", None, LIMITS) else {
            panic!("refused")
        };
        assert_eq!(rest.rows, 700);
        assert!(matches!(
            store.reserve_export(
                "dave",
                None,
                ExportLimits {
                    rows_per_day: 0,
                    exports_per_day: 5
                }
            ),
            ReserveOutcome::OverLimit { .. }
        ));
    }

    #[test]
    fn concurrent_reservations_are_atomic() {
        let store = std::sync::Arc::new(MemoryStore::new(DAY));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || reserve(&store, 400).is_some())
            })
            .collect();
        let granted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|granted| *granted)
            .count();
        assert_eq!(granted, 2, "1000 rows hold two reservations of 400");
    }

    #[test]
    fn sliding_window_limits() {
        let store = MemoryStore::new(DAY);
        let window = Duration::from_millis(100);
        assert!(store.limit("ip", 2, window, true).is_none());
        assert!(
            store.limit("ip", 2, window, false).is_none(),
            "a check does not count"
        );
        assert!(store.limit("ip", 2, window, true).is_none());
        let wait = store.limit("ip", 2, window, true).unwrap();
        assert!(wait <= window);
        std::thread::sleep(window);
        assert!(store.limit("ip", 2, window, true).is_none());
    }

    #[test]
    fn owners_are_remembered_for_the_retention() {
        let store = MemoryStore::new(Duration::from_millis(50));
        store.record_owner("INV-1", "alice");
        assert_eq!(store.owner("INV-1").as_deref(), Some("alice"));
        assert_eq!(store.owner("INV-2"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(store.owner("INV-1"), None);
    }
}
