//! Decisions kept for requests whose Cedar inputs repeat exactly: a caller polling the same
//! invoice, a page of the same list. The key is everything the Cedar request is built from
//! ([`Inputs`]), so a kept decision is the one Cedar would give again; the cache belongs to one
//! loaded policy set and goes with it on reload.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::decision::Decision;
use crate::request::Inputs;

/// The most text a kept key may hold: a request with a longer resource id, list of roles or
/// reason is decided every time, so a client sending long distinct paths cannot make the cache
/// hold `capacity` times its longest request.
const MAX_KEY_TEXT_BYTES: usize = 1024;

/// At most `capacity` decisions, each key at most `MAX_KEY_TEXT_BYTES` of text (about 6 MiB with
/// the default 4096); when full, it starts over (a flood of distinct requests costs one clearing
/// per `capacity` requests, never memory).
pub(crate) struct DecisionCache {
    capacity: usize,
    entries: Mutex<HashMap<Inputs, Decision>>,
}

impl DecisionCache {
    /// A cache of `capacity` decisions; 0 keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether it keeps anything.
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The decision kept for these inputs.
    pub(crate) fn get(&self, inputs: &Inputs) -> Option<Decision> {
        if !self.enabled() {
            return None;
        }
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(inputs)
            .cloned()
    }

    /// Keeps a decision.
    pub(crate) fn insert(&self, inputs: Inputs, decision: &Decision) {
        if !self.enabled() || inputs.text_bytes() > MAX_KEY_TEXT_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let full = (entries.len() >= self.capacity).then(|| std::mem::take(&mut *entries));
        entries.insert(inputs, decision.clone());
        drop(entries);
        // The old entries are freed after the lock is released.
        drop(full);
    }

    /// How many decisions are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
