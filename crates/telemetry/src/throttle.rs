//! Repeated log lines, throttled: a failure that hits every request (the upstream down, the
//! state store unreachable, a full disk) logs one line per second per kind, and that line says
//! how many were held back since the last one. Metrics still count every occurrence.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line of a kind per this interval.
const EVERY: Duration = Duration::from_secs(1);

/// Per kind: when its last line was logged, and how many were held back since.
static LINES: Mutex<Option<HashMap<&'static str, (Instant, u64)>>> = Mutex::new(None);

/// Whether a line of this kind may be logged now: `Some(held_back)` (the lines of this kind
/// not logged since the last one), or `None` to skip it.
///
/// ```
/// # let error = "connection refused";
/// if let Some(held_back) = invoiceguard_telemetry::throttle("request failed") {
///     tracing::warn!(%error, held_back, "request failed");
/// }
/// ```
pub fn throttle(kind: &'static str) -> Option<u64> {
    let now = Instant::now();
    let mut lines = LINES.lock().unwrap_or_else(|p| p.into_inner());
    let lines = lines.get_or_insert_with(HashMap::new);
    match lines.get_mut(kind) {
        Some((last, held_back)) if now.duration_since(*last) < EVERY => {
            *held_back += 1;
            None
        }
        Some((last, held_back)) => {
            *last = now;
            Some(std::mem::take(held_back))
        }
        None => {
            lines.insert(kind, (now, 0));
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_second_per_kind_counting_the_rest() {
        assert_eq!(throttle("test: a"), Some(0));
        assert_eq!(throttle("test: b"), Some(0), "kinds are separate");
        for _ in 0..99 {
            assert_eq!(throttle("test: a"), None);
        }
        std::thread::sleep(EVERY);
        assert_eq!(throttle("test: a"), Some(99));
        assert_eq!(throttle("test: a"), None);
    }
}
