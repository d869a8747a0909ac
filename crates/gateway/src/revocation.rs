//! Who is revoked: every replica keeps the whole set in memory, refreshed when the state store
//! announces a change (at once, by pub/sub with Redis) and every few seconds; a store outage
//! keeps the last known set, so it never un-blocks anyone.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use invoiceguard_state::StateStore;

/// The set is read again at least this often, even without an announcement.
const RESYNC: Duration = Duration::from_secs(5);

/// The in-memory revocation set: subject → until (Unix seconds, 0 for good).
#[derive(Default)]
pub(crate) struct Revocations {
    set: RwLock<HashMap<String, u64>>,
}

impl Revocations {
    /// Whether `subject` is revoked at `now_unix`.
    pub(crate) fn is_revoked(&self, subject: &str, now_unix: u64) -> bool {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        set.get(subject)
            .is_some_and(|until| *until == 0 || *until > now_unix)
    }

    /// Reads the whole set from the store; on failure the last known set stays.
    pub(crate) async fn refresh(&self, state: &StateStore) {
        match state.revocations().await {
            Ok(fresh) => *self.set.write().unwrap_or_else(|p| p.into_inner()) = fresh,
            Err(error) => {
                tracing::warn!(%error, "revocations not refreshed; the last known set stays")
            }
        }
    }

    /// Keeps the set current for as long as the gateway runs.
    pub(crate) fn spawn_sync(self: &Arc<Self>, state: Arc<StateStore>) {
        let weak = Arc::downgrade(self);
        let changes = state.revocation_changes();
        tokio::spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                me.refresh(&state).await;
                drop(me);
                tokio::select! {
                    () = changes.notified() => {}
                    () = tokio::time::sleep(RESYNC) => {}
                }
            }
        });
    }
}
