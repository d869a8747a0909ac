//! `invoiceguard audit verify`: proves audit files complete and unmodified, or says where not.

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
    let mut previous: Option<(String, u64)> = None; // (hash of the previous line, its seq)
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
                &mut previous,
                &mut result,
            );
        }
    }
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
    previous: &mut Option<(String, u64)>,
    result: &mut Verification,
) {
    let at = format!("{}:{line_number}", file.display());
    let Ok(event) = serde_json::from_slice::<Value>(line) else {
        result
            .problems
            .push(format!("{at}: not a JSON event (modified or truncated)"));
        return;
    };
    let (Some(seq), Some(prev_hash)) = (
        event.get("seq").and_then(Value::as_u64),
        event.get("prev_hash").and_then(Value::as_str),
    ) else {
        result
            .problems
            .push(format!("{at}: no `seq` or `prev_hash`"));
        return;
    };
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
    *previous = Some((chain.hash(line), seq));
}
