//! The trail's own evidence: each trail's hash chain verified (as `invoiceguard audit verify`
//! does), and for each spool folder how far each sink has delivered it.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use invoiceguard_audit::{Chain, read_cursor, segments, verify_trails};

/// One trail verified.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub(crate) path: String,
    pub(crate) events: u64,
    pub(crate) seq_range: Option<(u64, u64)>,
    pub(crate) intact: bool,
    pub(crate) anchored: bool,
    pub(crate) problems: Vec<String>,
    pub(crate) notes: Vec<String>,
}

/// One sink's delivery of one spool.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) spool: String,
    pub(crate) sink: String,
    /// Events in the spool the sink has not taken yet.
    pub(crate) pending: u64,
}

/// What the trails show about themselves.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trails {
    pub(crate) checked: Vec<Checked>,
    pub(crate) deliveries: Vec<Delivery>,
}

/// Verifies each trail on its own (replicas have chains of their own) and reads the sinks'
/// cursors of each spool folder.
pub(crate) fn check(
    paths: &[PathBuf],
    chain: &Chain,
    sinks: &[(String, String)],
) -> std::io::Result<Trails> {
    let mut trails = Trails::default();
    for path in paths {
        let check = verify_trails(std::slice::from_ref(path), chain, false, None)?;
        let verification = &check.verification;
        let mut problems = verification.problems.clone();
        problems.extend(verification.hint.iter().map(|hint| format!("hint: {hint}")));
        trails.checked.push(Checked {
            path: path.display().to_string(),
            events: verification.events,
            seq_range: verification.seq_range,
            intact: verification.is_intact(),
            anchored: check.anchored,
            problems,
            notes: check.notes.clone(),
        });
        if path.is_dir() {
            for (sink, _) in sinks {
                trails.deliveries.push(Delivery {
                    spool: path.display().to_string(),
                    sink: sink.clone(),
                    pending: pending(path, sink)?,
                });
            }
        }
    }
    Ok(trails)
}

/// The events of a spool after a sink's cursor.
fn pending(dir: &Path, sink: &str) -> std::io::Result<u64> {
    let cursor = read_cursor(dir, sink);
    let mut count = 0;
    for (first_seq, path) in segments(dir)? {
        if first_seq < cursor.segment {
            continue;
        }
        let mut file = std::fs::File::open(&path)?;
        if first_seq == cursor.segment {
            file.seek(SeekFrom::Start(cursor.offset))?;
        }
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line)? > 0 {
            // A sealed segment's header is no event.
            count +=
                u64::from(line.ends_with(b"\n") && !invoiceguard_audit::at_rest::is_header(&line));
            line.clear();
        }
    }
    Ok(count)
}
