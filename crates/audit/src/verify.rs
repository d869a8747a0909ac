//! `invoiceguard audit verify`: proves audit files complete and unmodified, or says where not.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chain::{Chain, GENESIS};

/// What verifying found.
#[derive(Debug, Default)]
pub struct Verification {
    /// Events read.
    pub events: u64,
    /// The first and last sequence numbers.
    pub seq_range: Option<(u64, u64)>,
    /// Every problem, with its file and line.
    pub problems: Vec<String>,
    /// Runs of events that repeat, byte for byte, events already read (a sink that sent a
    /// batch again after a crash): named, not counted as events, and not a problem.
    pub duplicates: Vec<String>,
}

/// How many recent events' hashes are kept to recognize a repeated one.
const REMEMBERED: usize = 100_000;

/// What `verify` carries from line to line.
#[derive(Default)]
struct Progress {
    /// The hash of the previous event's line and its seq.
    previous: Option<(String, u64)>,
    /// Recent events: seq → the hash of its line.
    seen: HashMap<u64, String>,
    order: VecDeque<u64>,
    /// The run of repeated events being read.
    repeat: Option<Repeat>,
}

/// A run of events that repeat earlier ones byte for byte.
struct Repeat {
    /// Where it begins (file and line).
    at: String,
    first: u64,
    last: u64,
    /// The seq read just before the run: a replay repeats the events up to it.
    resume: u64,
}

impl Progress {
    fn remember(&mut self, seq: u64, hash: &str) {
        if self.seen.insert(seq, hash.to_owned()).is_none() {
            self.order.push_back(seq);
            if self.order.len() > REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.seen.remove(&oldest);
            }
        }
    }

    /// Ends the current run of repeated events: a replay when it repeats every event up to the
    /// one read before it (what a sink sends again after a crash), else a copy put where it
    /// does not belong.
    fn end_repeat(&mut self, result: &mut Verification) {
        let Some(Repeat {
            at,
            first,
            last,
            resume,
        }) = self.repeat.take()
        else {
            return;
        };
        if last == resume {
            result.duplicates.push(format!(
                "{at}: seq {first} to {last} ({} event(s)) repeat the events before them byte for byte: delivered twice (a replay after a crash), not changed",
                last - first + 1
            ));
        } else {
            result.problems.push(format!(
                "{at}: seq {first} after seq {resume}: an event was inserted or the events were reordered (a copy of seq {first}{})",
                if last > first { format!(" to {last}") } else { String::new() }
            ));
        }
    }
}

impl Verification {
    /// Whether the files are complete and unmodified.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty() && self.events > 0
    }
}

/// Verifies files in order, the chain running across them (as after rotation). The first event
/// must chain to the genesis hash unless `continues` (a file that starts mid-chain).
pub fn verify(files: &[PathBuf], chain: &Chain, continues: bool) -> Verification {
    let mut result = Verification::default();
    let mut progress = Progress::default();
    for file in files {
        let text = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(error) => {
                result
                    .problems
                    .push(format!("{}: cannot read: {error}", file.display()));
                continue;
            }
        };
        for (index, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            check_line(
                file,
                index + 1,
                line,
                chain,
                continues,
                &mut progress,
                &mut result,
            );
        }
    }
    progress.end_repeat(&mut result);
    if result.events == 0 && result.problems.is_empty() {
        result.problems.push("no audit event found".to_owned());
    }
    result
}

fn check_line(
    file: &Path,
    line_number: usize,
    line: &[u8],
    chain: &Chain,
    continues: bool,
    progress: &mut Progress,
    result: &mut Verification,
) {
    let at = format!("{}:{line_number}", file.display());
    let Ok(event) = serde_json::from_slice::<Value>(line) else {
        progress.end_repeat(result);
        result
            .problems
            .push(format!("{at}: not a JSON event (modified or truncated)"));
        return;
    };
    let (Some(seq), Some(prev_hash)) = (
        event.get("seq").and_then(Value::as_u64),
        event.get("prev_hash").and_then(Value::as_str),
    ) else {
        progress.end_repeat(result);
        result
            .problems
            .push(format!("{at}: no `seq` or `prev_hash`"));
        return;
    };
    let hash = chain.hash(line);
    let previous_seq = progress.previous.as_ref().map(|(_, seq)| *seq);
    if previous_seq.is_some_and(|previous| seq <= previous)
        && progress.seen.get(&seq) == Some(&hash)
    {
        match &mut progress.repeat {
            Some(run) if seq == run.last + 1 => run.last = seq,
            _ => {
                progress.end_repeat(result);
                progress.repeat = Some(Repeat {
                    at,
                    first: seq,
                    last: seq,
                    resume: previous_seq.unwrap_or_default(),
                });
            }
        }
        return;
    }
    progress.end_repeat(result);
    let previous = &mut progress.previous;
    result.events += 1;
    result.seq_range = Some(match result.seq_range {
        None => (seq, seq),
        Some((first, _)) => (first, seq),
    });
    match previous {
        None => {
            if !continues && prev_hash != GENESIS {
                result.problems.push(format!(
                    "{at}: seq {seq} does not start the chain (events before it are missing)"
                ));
            }
        }
        Some((expected_hash, previous_seq)) => {
            let seq_follows = seq == *previous_seq + 1;
            let hash_follows = prev_hash == expected_hash.as_str();
            match (seq_follows, hash_follows) {
                (true, true) => {}
                (true, false) => result.problems.push(format!(
                    "{at}: seq {seq} does not chain to the event before it: that event was modified, or this one was"
                )),
                (false, _) if seq <= *previous_seq => result.problems.push(format!(
                    "{at}: seq {seq} after seq {previous_seq}: an event was inserted or the events were reordered"
                )),
                (false, true) => result.problems.push(format!(
                    "{at}: seq {seq} after seq {previous_seq}, yet chained: the sequence numbers were altered"
                )),
                (false, false) => result.problems.push(format!(
                    "{at}: seq {seq} after seq {previous_seq}: {} event(s) removed",
                    seq - *previous_seq - 1
                )),
            }
        }
    }
    progress.remember(seq, &hash);
    progress.previous = Some((hash, seq));
}
