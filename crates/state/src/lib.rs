//! State for invoiceguard: the facts one request cannot carry — who created each invoice (for
//! segregation of duties) and how much each principal has exported in the last day (for export
//! limits, reserved before forwarding and settled after). [`StateStore`] has one backend today,
//! `memory` (one process, nothing to install); a shared backend for many replicas comes next.

mod config;
mod memory;

pub use config::StateConfig;
pub use memory::MemoryStore;

use std::time::Duration;

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
    /// The store cannot be reached.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// The configured store.
pub enum StateStore {
    /// In this process only.
    Memory(MemoryStore),
}

impl StateStore {
    /// Opens the configured backend.
    pub fn open(config: &StateConfig) -> Result<Self, StateError> {
        Ok(Self::Memory(MemoryStore::new(Duration::from_secs(
            config.ownership_retention_days * 86_400,
        ))))
    }

    /// Records who created an invoice.
    pub async fn record_owner(&self, invoice: &str, creator: &str) -> Result<(), StateError> {
        match self {
            Self::Memory(store) => {
                store.record_owner(invoice, creator);
                Ok(())
            }
        }
    }

    /// Who created an invoice, when the gateway saw it created.
    pub async fn owner(&self, invoice: &str) -> Result<Option<String>, StateError> {
        match self {
            Self::Memory(store) => Ok(store.owner(invoice)),
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
        match self {
            Self::Memory(store) => Ok(store.reserve_export(principal, rows, limits)),
        }
    }

    /// Replaces a reservation by the rows actually exported.
    pub async fn settle_export(
        &self,
        reservation: &Reservation,
        rows: u64,
    ) -> Result<(), StateError> {
        match self {
            Self::Memory(store) => {
                store.settle_export(reservation, rows);
                Ok(())
            }
        }
    }

    /// Gives a reservation back (the export was refused or failed).
    pub async fn release_export(&self, reservation: &Reservation) -> Result<(), StateError> {
        match self {
            Self::Memory(store) => {
                store.release_export(reservation);
                Ok(())
            }
        }
    }
}
