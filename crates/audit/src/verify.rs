//! `invoiceguard audit verify`: proves audit files complete and unmodified, or says where not.
//!
//! The chain shows what was changed, removed, inserted or reordered *between* events; it cannot
//! show its own end being cut off. For that, an [`Anchor`] — the last `seq` and the hash of the
//! last event, as the gateway recorded them (the spool's `head` file) or as noted elsewhere (a
//! SIEM's last event, an archive's manifest) — is checked against the files' end.

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
    /// The hash of the last event's line: the head, to note and check later ([`Anchor`]).
    pub head: Option<String>,
    /// A likely cause when every event fails to chain (a keyed chain read without its key).
    pub hint: Option<String>,
    /// How many events did not chain to the event before them.
    broken_links: u64,
}

/// Where a trail must end: its last `seq` and the hash of its last event's line.
#[derive(Debug, Clone, Default)]
pub struct Anchor {
    /// The `seq` of the last event.
    pub last_seq: Option<u64>,
    /// The hash of the last event's line (64 hex digits).
    pub head: Option<String>,
    /// Where the anchor comes from, for the messages (e.g. `the spool's head file`).
    pub source: String,
}

impl Verification {
    /// Checks the files' end against an anchor: events after the last one read were removed
    /// (the end was cut off), or the last event was changed.
    pub fn check_anchor(&mut self, anchor: &Anchor) {
        let last = self.seq_range.map(|(_, last)| last);
        let source = &anchor.source;
        if let (Some(expected), Some(last)) = (anchor.last_seq, last) {
            if last < expected {
                self.problems.push(format!(
                    "the trail ends at seq {last}, but {source} says seq {expected}: {} event(s) at the end were removed",
                    expected - last
                ));
                return;
            }
            if last > expected {
                // Written after the anchor was taken: fine, but the head cannot be compared.
                return;
            }
        }
        if let (Some(expected), Some(head)) = (&anchor.head, &self.head)
            && !expected.eq_ignore_ascii_case(head)
        {
            self.problems.push(format!(
                "the last event's hash is {head}, but {source} says {expected}: the last event was modified or replaced"
            ));
        }
    }
}

/// How many recent events' hashes are kept to recognize a repeated one.
const REMEMBERED: usize = 100_000;

/// What `verify` carries from line to line.
#[derive(Default)]
struct Progress {
    /// The hash of the previous event's line and its seq.
    previous: Option<(String, u64)>,
    /// Where the previous event is (file and line).
    previous_at: String,
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
        // A sealed segment's lines are opened first; the chain is over the plaintext.
        let mut decoder = crate::at_rest::LineDecoder::new();
        for (index, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let line = match decoder.line(line) {
                crate::at_rest::Decoded::Event(plain) => plain,
                crate::at_rest::Decoded::Header => continue,
                crate::at_rest::Decoded::Unreadable(why) => {
                    result.problems.push(format!(
                        "{}:{}: cannot be opened: {why}",
                        file.display(),
                        index + 1
                    ));
                    continue;
                }
            };
            check_line(
                file,
                index + 1,
                &line,
                chain,
                continues,
                &mut progress,
                &mut result,
            );
        }
    }
    progress.end_repeat(&mut result);
    result.head = progress.previous.map(|(hash, _)| hash);
    if result.events > 2 && result.broken_links == result.events - 1 {
        result.hint = Some(
            "no event chains to the one before it: if the trail is keyed (`[audit] hmac_key_file`), verify it with `--key-file`".to_owned(),
        );
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
                (true, false) => {
                    result.broken_links += 1;
                    result.problems.push(format!(
                        "{}: seq {previous_seq} was modified: seq {seq} ({at}) no longer chains to it (or seq {seq}'s prev_hash was altered)",
                        progress.previous_at
                    ));
                }
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
    progress.previous_at = at;
}

/// The anchor a spool folder keeps of its own end (its `head` file, written by the gateway after
/// every group commit); `None` for a spool without one (written by an older gateway, or empty).
pub fn spool_anchor(dir: &Path) -> Result<Option<Anchor>, String> {
    let path = dir.join(crate::log::HEAD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: cannot read: {error}", path.display())),
    };
    let head: Value = serde_json::from_str(&text)
        .map_err(|_| format!("{}: not a head file (modified?)", path.display()))?;
    match (
        head.get("last_seq").and_then(Value::as_u64),
        head.get("head").and_then(Value::as_str),
    ) {
        (Some(0), _) => Ok(None),
        (Some(last_seq), Some(hash)) => Ok(Some(Anchor {
            last_seq: Some(last_seq),
            head: Some(hash.to_owned()),
            source: format!("the spool's head file ({})", path.display()),
        })),
        _ => Err(format!("{}: not a head file (modified?)", path.display())),
    }
}

/// A trail checked as `invoiceguard audit verify` checks it: files and spool folders, oldest
/// first; a spool folder read as its segments, its `head` file and its sinks' cursors checked.
#[derive(Debug, Default)]
pub struct TrailCheck {
    /// The chain and sequence verification, every anchor checked.
    pub verification: Verification,
    /// Whether the trail's end was checked against an anchor (a spool's head file, or one given).
    pub anchored: bool,
    /// What is worth knowing but is no problem (earlier segments removed after delivery).
    pub notes: Vec<String>,
}

/// Verifies `paths` (audit files, or spool folders) in the order given; `expected` is an anchor
/// noted elsewhere (`--expect-last-seq`), checked with the spools' own.
pub fn verify_trails(
    paths: &[PathBuf],
    chain: &Chain,
    continues: bool,
    expected: Option<Anchor>,
) -> std::io::Result<TrailCheck> {
    let mut expanded = Vec::new();
    let mut continues = continues;
    let mut anchors = Vec::new();
    let mut notes = Vec::new();
    let mut spool_problems = Vec::new();
    for path in paths {
        if !path.is_dir() {
            expanded.push(path.clone());
            continue;
        }
        // The spool's own record of its end, and where its sinks had got to.
        match spool_anchor(path) {
            Ok(Some(anchor)) => anchors.push(anchor),
            Ok(None) => notes.push(format!(
                "`{}` has no head file: events cut off its end cannot be detected (pass --expect-last-seq)",
                path.display()
            )),
            Err(problem) => spool_problems.push(problem),
        }
        spool_problems.extend(cursor_problems(path));
        let segments = crate::spool::segments(path).map_err(|error| {
            std::io::Error::new(error.kind(), format!("`{}`: {error}", path.display()))
        })?;
        // Segments before the first were delivered to every sink and removed.
        if let Some((first_seq, _)) = segments.first()
            && *first_seq > 1
            && expanded.is_empty()
        {
            notes.push(format!(
                "`{}` starts at seq {first_seq}: earlier segments were delivered and removed",
                path.display()
            ));
            continues = true;
        }
        expanded.extend(segments.into_iter().map(|(_, segment)| segment));
    }
    let mut verification = verify(&expanded, chain, continues);
    anchors.extend(expected);
    for anchor in &anchors {
        verification.check_anchor(anchor);
    }
    verification.problems.extend(spool_problems);
    Ok(TrailCheck {
        verification,
        anchored: !anchors.is_empty(),
        notes,
    })
}

/// What the spool's sink cursors show about its end: a sink that had read further into a
/// segment than the segment now holds means the segment's end was cut off.
pub fn cursor_problems(dir: &Path) -> Vec<String> {
    let Ok(segments) = crate::spool::segments(dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(sink) = name.strip_suffix(".cursor") else {
            continue;
        };
        let cursor = crate::spool::read_cursor(dir, sink);
        let Some((_, path)) = segments.iter().find(|(first, _)| *first == cursor.segment) else {
            continue;
        };
        let length = std::fs::metadata(path).map_or(0, |m| m.len());
        if cursor.offset > length {
            problems.push(format!(
                "{}: the sink `{sink}` had delivered {} bytes of it, but it holds {length}: its end was cut off",
                path.display(),
                cursor.offset
            ));
        }
    }
    problems.sort();
    problems
}
