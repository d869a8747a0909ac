//! Who is revoked: every replica keeps the whole set in memory, refreshed when the state store
//! announces a change (at once, by pub/sub with Redis) and every few seconds; a store outage
//! keeps the last known set, so it never un-blocks anyone. A replica that has never read the
//! set (started while the store was down) does not know who is revoked, so it lets nobody in
//! (503) until it has.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use invoiceguard_authn::AuthnError;
use invoiceguard_state::StateStore;

use crate::error::GatewayError;

/// The set is read again at least this often, even without an announcement.
const RESYNC: Duration = Duration::from_secs(5);

/// The in-memory revocation set: subject → until (Unix seconds, 0 for good); none until it
/// has been read once.
#[derive(Default)]
pub(crate) struct Revocations {
    set: RwLock<Option<HashMap<String, u64>>>,
}

impl Revocations {
    /// Whether `subject` may go on at `now_unix`: refused when revoked, and unavailable while the
    /// set has never been read.
    pub(crate) fn check(&self, subject: &str, now_unix: u64) -> Result<(), GatewayError> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let Some(set) = set.as_ref() else {
            return Err(GatewayError::FactUnavailable(
                "the revocation list has not been read from the state store yet".to_owned(),
            ));
        };
        match set.get(subject) {
            Some(until) if *until == 0 || *until > now_unix => Err(AuthnError::Revoked.into()),
            _ => Ok(()),
        }
    }

    /// Whether the set has been read at least once.
    pub(crate) fn is_loaded(&self) -> bool {
        self.set.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Reads the whole set from the store; on failure the last known set stays.
    pub(crate) async fn refresh(&self, state: &StateStore) {
        match state.revocations().await {
            Ok(fresh) => *self.set.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh),
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
