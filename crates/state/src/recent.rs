//! Recent answers of limit checks against a shared store, kept in this replica for a quarter of a
//! second: the brute-force counters are checked on every request (its source address, its
//! subject), and with Redis each check was a round trip on the hot path.
//!
//! Keyed on the counter's key and its limit — all a check's answer depends on besides the
//! counter, which changes only by a counted hit. A hit this replica counts drops the key's entry,
//! so its own failures show at once; a lockout reached by another replica's hits shows here
//! within [`KEEP`] (each further failure sent here is counted in the store, and its answer seen,
//! at once). An answer "past the limit, wait W" is kept for at most W and [`KEEP`], the wait
//! shortened by the time passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is kept.
pub(crate) const KEEP: Duration = Duration::from_millis(250);

/// How many keys are kept at most: past that, the entries are dropped whole (a flood of made-up
/// keys costs store calls, not memory).
const MAX_KEYS: usize = 65_536;

/// One answer: when it was given, the limit it was for, and the wait it said.
struct Answer {
    at: Instant,
    limit: u64,
    wait: Option<Duration>,
}

/// The recent answers, by counter key.
#[derive(Default)]
pub(crate) struct RecentChecks {
    answers: Mutex<HashMap<String, Answer>>,
}

impl RecentChecks {
    /// The answer for `key` at `limit` given less than [`KEEP`] ago, its wait shortened by the
    /// time since (a wait that ran out meanwhile is asked again).
    pub(crate) fn get(&self, key: &str, limit: u64, now: Instant) -> Option<Option<Duration>> {
        let answers = self.answers.lock().ok()?;
        let answer = answers.get(key).filter(|a| a.limit == limit)?;
        let age = now.checked_duration_since(answer.at)?;
        if age >= KEEP {
            return None;
        }
        match answer.wait {
            None => Some(None),
            Some(wait) => wait.checked_sub(age).filter(|w| !w.is_zero()).map(Some),
        }
    }

    /// Keeps the store's answer for `key` at `limit`, given at `at`.
    pub(crate) fn put(&self, key: &str, limit: u64, wait: Option<Duration>, at: Instant) {
        if let Ok(mut answers) = self.answers.lock() {
            if answers.len() >= MAX_KEYS && !answers.contains_key(key) {
                answers.clear();
            }
            answers.insert(key.to_owned(), Answer { at, limit, wait });
        }
    }

    /// Drops the answer for `key`: a hit was just counted.
    pub(crate) fn forget(&self, key: &str) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_a_quarter_second_for_their_limit_and_forgotten_on_a_hit() {
        let recent = RecentChecks::default();
        let t0 = Instant::now();
        assert_eq!(recent.get("ip:a", 30, t0), None);
        recent.put("ip:a", 30, None, t0);
        assert_eq!(recent.get("ip:a", 30, t0 + KEEP / 2), Some(None));
        // Another limit on the same key is asked again; so is an answer KEEP old.
        assert_eq!(recent.get("ip:a", 5, t0), None);
        assert_eq!(recent.get("ip:a", 30, t0 + KEEP), None);
        recent.forget("ip:a");
        assert_eq!(recent.get("ip:a", 30, t0), None);

        // A lockout: the wait shortened by the time passed, never kept past its end.
        recent.put("ip:b", 30, Some(Duration::from_secs(10)), t0);
        assert_eq!(
            recent.get("ip:b", 30, t0 + Duration::from_millis(100)),
            Some(Some(Duration::from_millis(9_900)))
        );
        recent.put("ip:c", 30, Some(Duration::from_millis(50)), t0);
        assert_eq!(
            recent.get("ip:c", 30, t0 + Duration::from_millis(49)),
            Some(Some(Duration::from_millis(1)))
        );
        assert_eq!(recent.get("ip:c", 30, t0 + Duration::from_millis(50)), None);
    }

    #[test]
    fn a_flood_of_keys_is_bounded() {
        let recent = RecentChecks::default();
        let t0 = Instant::now();
        for i in 0..MAX_KEYS + 10 {
            recent.put(&format!("ip:{i}"), 30, None, t0);
        }
        assert!(recent.answers.lock().unwrap().len() <= MAX_KEYS);
        assert_eq!(
            recent.get(&format!("ip:{}", MAX_KEYS + 9), 30, t0),
            Some(None)
        );
    }
}
