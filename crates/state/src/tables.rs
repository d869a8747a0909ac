//! Small tables every replica keeps whole in memory, read again when a change is announced (as
//! revocations are): what the IdP's security events did to a subject (`lifecycle`) and the
//! time-limited role grants (`grants`). And the roles last seen for each subject, swapped
//! atomically so a role change is noticed once across replicas.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A table of small values by field, announced to every replica when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Subject → what security events asked of it (logins before a time refused, multi-factor
    /// logins before a time not counted, disabled by the IdP).
    Lifecycle,
    /// Grant id → a time-limited role grant.
    Grants,
}

impl Table {
    /// The table's key.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Lifecycle => "lifecycle",
            Self::Grants => "grants",
        }
    }
}

/// The tables, and the roles last seen per subject, in this process's memory.
#[derive(Default)]
pub(crate) struct MemoryTables {
    tables: Mutex<HashMap<Table, HashMap<String, String>>>,
    seen: Mutex<HashMap<String, (String, u64, Instant)>>,
}

impl MemoryTables {
    pub(crate) fn put(&self, table: Table, field: &str, value: &str) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        tables
            .entry(table)
            .or_default()
            .insert(field.to_owned(), value.to_owned());
    }

    pub(crate) fn remove(&self, table: Table, field: &str) -> bool {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        tables
            .get_mut(&table)
            .is_some_and(|fields| fields.remove(field).is_some())
    }

    pub(crate) fn all(&self, table: Table) -> HashMap<String, String> {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        tables.get(&table).cloned().unwrap_or_default()
    }

    /// See [`crate::StateStore::roles_seen`].
    pub(crate) fn roles_seen(
        &self,
        subject: &str,
        roles: &str,
        at: u64,
        retention: Duration,
    ) -> Option<String> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= 100_000 {
            seen.retain(|_, (_, _, until)| *until > now);
        }
        let until = now + retention;
        match seen.get_mut(subject) {
            Some((before, last_at, _)) if before.as_str() == roles => {
                *last_at = (*last_at).max(at);
                None
            }
            // A token older than the one last seen: its roles are not news.
            Some((_, last_at, _)) if *last_at > at => None,
            Some(entry) => {
                let before = std::mem::replace(entry, (roles.to_owned(), at, until));
                Some(before.0)
            }
            None => {
                seen.insert(subject.to_owned(), (roles.to_owned(), at, until));
                None
            }
        }
    }
}

impl MemoryTables {
    /// The roles last seen for a subject.
    pub(crate) fn roles_of(&self, subject: &str) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(subject).map(|(roles, _, _)| roles.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_reported_once_and_an_older_token_is_not_news() {
        let tables = MemoryTables::default();
        let keep = Duration::from_secs(60);
        assert_eq!(tables.roles_seen("ann", "invoicing", 100, keep), None);
        assert_eq!(tables.roles_seen("ann", "invoicing", 110, keep), None);
        assert_eq!(
            tables.roles_seen("ann", "approver invoicing", 120, keep),
            Some("invoicing".to_owned())
        );
        assert_eq!(
            tables.roles_seen("ann", "approver invoicing", 121, keep),
            None
        );
        assert_eq!(
            tables.roles_seen("ann", "invoicing", 105, keep),
            None,
            "a token issued before the change still shows the old roles"
        );
    }

    #[test]
    fn tables_keep_fields_apart() {
        let tables = MemoryTables::default();
        tables.put(Table::Grants, "g1", "{}");
        tables.put(Table::Lifecycle, "ann", "{}");
        assert_eq!(tables.all(Table::Grants).len(), 1);
        assert!(tables.remove(Table::Grants, "g1"));
        assert!(!tables.remove(Table::Grants, "g1"), "removed once");
        assert_eq!(tables.all(Table::Lifecycle).len(), 1);
    }
}
