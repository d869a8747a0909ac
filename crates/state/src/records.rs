//! Short-lived records that every replica must see, kept by key with a time to live: browser
//! sessions, logins in progress (taken once), identifiers used once (a logout token's `jti`),
//! export approvals, and indexes that name records (all of a subject's sessions, to end them at
//! once; the export requests waiting for an approver).
//! The memory backend keeps them in this process (`MemoryRecords`); the Redis backend in Redis.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The kinds of record, each its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A browser session, by the hash of its id.
    Session,
    /// A login in progress, by its `state`.
    Login,
    /// An identifier that may be used once (a logout token's issuer and `jti`).
    Used,
    /// An export waiting for (or given) another person's approval, by its id.
    Approval,
    /// An index naming records: the sessions of one subject or IdP session (`sid`), the pending
    /// export requests.
    Index,
    /// A subject by its email address (a security event may name a person by it).
    Email,
}

impl RecordKind {
    /// The key prefix of the kind.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Login => "login",
            Self::Used => "used",
            Self::Approval => "approval",
            Self::Index => "index",
            Self::Email => "email",
        }
    }
}

/// Records and indexes in this process's memory. Expired entries are dropped when the map has
/// doubled since the last sweep, so the cost of a write does not grow with the map.
#[derive(Default)]
pub(crate) struct MemoryRecords {
    values: Mutex<Swept<String>>,
    indexes: Mutex<Swept<HashSet<String>>>,
}

/// Entries with their expiry, swept now and then.
struct Swept<T> {
    entries: HashMap<(RecordKind, String), (T, Instant)>,
    sweep_at: usize,
}

impl<T> Default for Swept<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            sweep_at: 1024,
        }
    }
}

impl<T> Swept<T> {
    fn live(&mut self, key: &(RecordKind, String), now: Instant) -> Option<&mut T> {
        match self.entries.get(key) {
            Some((_, until)) if *until <= now => {
                self.entries.remove(key);
                None
            }
            _ => self.entries.get_mut(key).map(|(value, _)| value),
        }
    }

    fn insert(&mut self, key: (RecordKind, String), value: T, until: Instant, now: Instant) {
        self.entries.insert(key, (value, until));
        if self.entries.len() >= self.sweep_at {
            self.entries.retain(|_, (_, until)| *until > now);
            self.sweep_at = (self.entries.len() * 2).max(1024);
        }
    }
}

fn key(kind: RecordKind, id: &str) -> (RecordKind, String) {
    (kind, id.to_owned())
}

impl MemoryRecords {
    pub(crate) fn put(&self, kind: RecordKind, id: &str, value: &str, ttl: Duration) {
        let now = Instant::now();
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.insert(key(kind, id), value.to_owned(), now + ttl, now);
    }

    pub(crate) fn get(&self, kind: RecordKind, id: &str) -> Option<String> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.live(&key(kind, id), Instant::now()).cloned()
    }

    pub(crate) fn take(&self, kind: RecordKind, id: &str) -> Option<String> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(kind, id);
        values.live(&key, Instant::now())?;
        values.entries.remove(&key).map(|(value, _)| value)
    }

    pub(crate) fn delete(&self, kind: RecordKind, id: &str) -> bool {
        self.take(kind, id).is_some()
    }

    pub(crate) fn first_use(&self, kind: RecordKind, id: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(kind, id);
        if values.live(&key, now).is_some() {
            return false;
        }
        values.insert(key, String::new(), now + ttl, now);
        true
    }

    pub(crate) fn index_add(&self, index: &str, member: &str, ttl: Duration) {
        let now = Instant::now();
        let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(RecordKind::Index, index);
        let mut members = indexes
            .live(&key, now)
            .map(std::mem::take)
            .unwrap_or_default();
        members.insert(member.to_owned());
        // An index lives as long as its newest member may.
        let until = indexes
            .entries
            .get(&key)
            .map_or(now + ttl, |(_, until)| (*until).max(now + ttl));
        indexes.insert(key, members, until, now);
    }

    pub(crate) fn index_members(&self, index: &str) -> Vec<String> {
        let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(RecordKind::Index, index);
        indexes
            .live(&key, Instant::now())
            .map(|members| members.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn index_remove(&self, index: &str, member: &str) {
        let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(RecordKind::Index, index);
        if let Some(members) = indexes.live(&key, Instant::now()) {
            members.remove(member);
        }
    }

    pub(crate) fn index_take(&self, index: &str) -> Vec<String> {
        let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(RecordKind::Index, index);
        if indexes.live(&key, Instant::now()).is_none() {
            return Vec::new();
        }
        indexes
            .entries
            .remove(&key)
            .map(|(members, _)| members.into_iter().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_expire_and_are_taken_once() {
        let records = MemoryRecords::default();
        records.put(RecordKind::Login, "s1", "a", Duration::from_secs(60));
        records.put(RecordKind::Login, "s2", "b", Duration::from_millis(20));
        assert_eq!(records.get(RecordKind::Login, "s1").as_deref(), Some("a"));
        assert_eq!(
            records.get(RecordKind::Session, "s1"),
            None,
            "kinds are apart"
        );
        assert_eq!(records.take(RecordKind::Login, "s1").as_deref(), Some("a"));
        assert_eq!(records.take(RecordKind::Login, "s1"), None, "taken once");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(records.get(RecordKind::Login, "s2"), None, "expired");
    }

    #[test]
    fn an_identifier_is_used_once_until_it_expires() {
        let records = MemoryRecords::default();
        assert!(records.first_use(RecordKind::Used, "jti-1", Duration::from_millis(20)));
        assert!(!records.first_use(RecordKind::Used, "jti-1", Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(40));
        assert!(records.first_use(RecordKind::Used, "jti-1", Duration::from_secs(1)));
    }

    #[test]
    fn an_index_is_taken_whole() {
        let records = MemoryRecords::default();
        records.index_add("sub:alice", "h1", Duration::from_secs(60));
        records.index_add("sub:alice", "h2", Duration::from_secs(60));
        records.index_add("sub:bob", "h3", Duration::from_secs(60));
        let mut members = records.index_members("sub:alice");
        members.sort();
        assert_eq!(members, ["h1", "h2"]);
        records.index_remove("sub:alice", "h2");
        records.index_add("sub:alice", "h2", Duration::from_secs(60));
        let mut taken = records.index_take("sub:alice");
        taken.sort();
        assert_eq!(taken, ["h1", "h2"]);
        assert!(records.index_take("sub:alice").is_empty());
        assert_eq!(records.index_take("sub:bob"), ["h3"]);
    }

    #[test]
    fn expired_entries_are_swept_as_the_map_grows() {
        let records = MemoryRecords::default();
        for n in 0..1100 {
            records.put(RecordKind::Used, &n.to_string(), "", Duration::ZERO);
        }
        let len = records.values.lock().map(|v| v.entries.len()).unwrap_or(0);
        assert!(len < 1100, "{len} entries kept");
    }
}
