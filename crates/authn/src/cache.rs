//! Verified tokens remembered until they expire, so a signature is checked once per token rather
//! than once per request. Keyed by the token's SHA-256, never by the token itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::principal::Principal;

/// What is remembered of one token.
#[derive(Clone)]
pub(crate) struct Cached {
    pub(crate) principal: Arc<Principal>,
    /// Unix time after which the entry is void.
    pub(crate) until: u64,
    /// The issuer (index into the trusted issuers) and key id that verified it, so a key removed
    /// from the IdP's set also voids the tokens it signed.
    pub(crate) verified_by: Option<(usize, String)>,
}

/// A bounded map of token hash to verified principal.
pub(crate) struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Cached>>,
}

pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether it remembers anything (`token_cache_entries` is not 0).
    pub(crate) fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The remembered entry, if still valid at `now`.
    pub(crate) fn get(&self, hash: &[u8; 32], now: u64) -> Option<Cached> {
        if !self.is_enabled() {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(hash) {
            Some(cached) if cached.until > now => Some(cached.clone()),
            Some(_) => {
                entries.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Remembers an entry. When full, expired entries go first; if none has expired, the whole
    /// cache is dropped (cheap, bounded, and only costs re-verification).
    pub(crate) fn insert(&self, hash: [u8; 32], cached: Cached, now: u64) {
        if !self.is_enabled() || cached.until <= now {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, c| c.until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(hash, cached);
    }

    /// Forgets an entry (its key disappeared).
    pub(crate) fn remove(&self, hash: &[u8; 32]) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{AuthMethod, PrincipalKind};

    fn cached(until: u64) -> Cached {
        let principal = Principal {
            kind: PrincipalKind::User,
            id: "alice".into(),
            client_id: None,
            roles: vec![],
            scopes: vec![],
            amr: vec![],
            acr: None,
            auth_time: None,
            mfa: true,
            method: AuthMethod::Jwt,
            issued_at: None,
            email: None,
        };
        Cached {
            principal: Arc::new(principal),
            until,
            verified_by: None,
        }
    }

    #[test]
    fn entries_live_until_their_expiry_and_the_cache_stays_bounded() {
        let cache = TokenCache::new(2);
        let (a, b, c) = (token_hash("a"), token_hash("b"), token_hash("c"));
        cache.insert(a, cached(100), 10);
        assert!(cache.get(&a, 99).is_some());
        assert!(cache.get(&a, 100).is_none(), "void at expiry");
        cache.insert(a, cached(100), 10);
        cache.insert(b, cached(50), 10);
        cache.insert(c, cached(100), 60);
        assert!(cache.len() <= 2);
        assert!(cache.get(&c, 60).is_some());
        assert!(cache.get(&b, 60).is_none());
        cache.insert(b, cached(5), 10);
        assert!(
            cache.get(&b, 1).is_none(),
            "already expired entries are not stored"
        );
        // `token_cache_entries = 0`: nothing is kept, so nothing is found.
        let off = TokenCache::new(0);
        assert!(!off.is_enabled());
        off.insert(a, cached(100), 10);
        assert!(off.get(&a, 10).is_none());
    }
}
