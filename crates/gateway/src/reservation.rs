//! An export's reserved rows, held from the decision to the answer. Whatever ends the request —
//! a refusal, an upstream failure, the client going away mid-request (its future dropped) — the
//! rows go back to the quota: explicitly with [`HeldExport::release`], or when the guard is
//! dropped unsettled (in the background). [`HeldExport::settle`] charges what the answer held
//! instead. A release or settle that fails is logged (once a second) and counted
//! (`invoiceguard_export_reservation_failures_total`), never ignored.

use std::sync::Arc;

use invoiceguard_state::{Reservation, StateStore};
use invoiceguard_telemetry::{metrics, throttle};

/// Rows held in a principal's export quota until the answer says how many were exported.
pub(crate) struct HeldExport {
    reservation: Option<Reservation>,
    state: Arc<StateStore>,
}

impl HeldExport {
    pub(crate) fn new(reservation: Reservation, state: Arc<StateStore>) -> Self {
        Self {
            reservation: Some(reservation),
            state,
        }
    }

    /// The rows held.
    pub(crate) fn rows(&self) -> u64 {
        self.reservation.as_ref().map_or(0, |r| r.rows)
    }

    /// Gives the rows back now (the export was refused or failed).
    pub(crate) async fn release(mut self) {
        if let Some(reservation) = self.reservation.take() {
            let result = self.state.release_export(&reservation).await;
            failed("released", result);
        }
    }

    /// Charges `rows` (what the answer held) instead of the rows held.
    pub(crate) async fn settle(mut self, rows: u64) {
        if let Some(reservation) = self.reservation.take() {
            let result = self.state.settle_export(&reservation, rows).await;
            failed("settled", result);
        }
    }
}

impl Drop for HeldExport {
    /// A request that ended without settling or releasing (its client went away): the rows go
    /// back in the background.
    fn drop(&mut self) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let state = self.state.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let result = state.release_export(&reservation).await;
                    failed("released", result);
                });
            }
            Err(_) => failed(
                "released",
                Err(invoiceguard_state::StateError::Unavailable(
                    "no runtime to release it on".to_owned(),
                )),
            ),
        }
    }
}

/// Logs and counts a reservation that could not be released or settled: it keeps counting
/// against the quota until the day's window passes.
fn failed(what: &str, result: Result<(), invoiceguard_state::StateError>) {
    if let Err(error) = result {
        metrics().export_reservation_failures.inc();
        if let Some(held_back) = throttle("export reservation not released or settled") {
            tracing::warn!(%error, held_back, "export reservation not {what}; it counts as reserved");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use invoiceguard_state::{ExportLimits, ReserveOutcome, StateConfig};

    const LIMITS: ExportLimits = ExportLimits {
        rows_per_day: 100,
        exports_per_day: 10,
    };

    async fn held(state: &Arc<StateStore>, rows: u64) -> HeldExport {
        match state
            .reserve_export("carol", Some(rows), LIMITS)
            .await
            .unwrap()
        {
            ReserveOutcome::Reserved(reservation) => HeldExport::new(reservation, state.clone()),
            other => panic!("{other:?}"),
        }
    }

    async fn left(state: &StateStore) -> u64 {
        match state.reserve_export("carol", None, LIMITS).await.unwrap() {
            ReserveOutcome::Reserved(probe) => {
                let rows = probe.rows;
                state.release_export(&probe).await.unwrap();
                rows
            }
            ReserveOutcome::OverLimit { .. } => 0,
        }
    }

    #[tokio::test]
    async fn rows_go_back_when_released_or_dropped_and_stay_when_settled() {
        let state = Arc::new(StateStore::open(&StateConfig::default()).unwrap());
        held(&state, 30).await.release().await;
        assert_eq!(left(&state).await, 100, "released");
        held(&state, 30).await.settle(12).await;
        assert_eq!(left(&state).await, 88, "settled to what was exported");
        // A request cut short (its future dropped): the guard gives the rows back by itself.
        let cut_short = held(&state, 40).await;
        assert_eq!(cut_short.rows(), 40);
        assert_eq!(left(&state).await, 48);
        drop(cut_short);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(left(&state).await, 88, "dropped unsettled: released");
    }
}
