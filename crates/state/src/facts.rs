//! What the store keeps and answers, whatever the backend: export quotas and their reservations,
//! and the one error a call can have.

use std::time::Duration;

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
