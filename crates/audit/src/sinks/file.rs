//! The file sink: events appended to a file (for a log shipper to tail), rotated by size —
//! `audit.log` becomes `audit.log.1`, `.1` becomes `.2`… and the oldest beyond `keep_files` is
//! removed. A batch is delivered once it is on disk (`fsync`).
//!
//! Delivery from the spool is at least once: after a crash, the batch whose cursor was not yet
//! saved is sent again. A network collector deduplicates by `event_id`; a file cannot, so the
//! file sink does: at its first batch after a start it reads the last lines it wrote (the file's
//! last 2 MiB, and its rotated `.1` when the file is shorter) and skips every event it finds
//! there, byte for byte, until the first one it does not — so the file holds each event once
//! and `audit verify` passes on it after any number of crashes.

use bytes::Bytes;
use std::collections::HashSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sinks::{Format, SinkConfig, encode};

/// How much of the file's end is read at start to find events already written: more than a
/// batch (1 MiB), which is what a crash can make the sink send again.
const REPLAY_WINDOW: u64 = 2 * 1024 * 1024;

/// A file and its rotation.
pub(crate) struct FileSink {
    name: String,
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    format: Format,
    file: Option<File>,
    /// The lines at the file's end when the sink started, until the first event not among
    /// them arrives (`None` once it has, or before they are read).
    written_before: Option<HashSet<Vec<u8>>>,
    /// Whether the lines at the file's end have been read.
    started: bool,
}

/// Makes the file's folder when it is missing (mode 0700, as the spool's) and opens the file for
/// appending: the gateway does not start with a file sink it cannot write.
pub(crate) fn prepare(path: &Path) -> Result<(), String> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|e| format!("cannot create the folder `{}`: {e}", folder.display()))?;
    }
    append(path)
        .map(drop)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// What `check` finds wrong with a file sink's path, without creating it: the file cannot be
/// appended to, or its folder is missing and the nearest folder above cannot be written (a probe
/// file is made there and removed).
pub(crate) fn problem(path: &Path) -> Option<String> {
    if path.is_dir() {
        return Some(format!("`{}` is a folder", path.display()));
    }
    if path.exists() {
        return OpenOptions::new()
            .append(true)
            .open(path)
            .err()
            .map(|e| format!("cannot write `{}`: {e}", path.display()));
    }
    let mut folder = path.parent()?;
    while !folder.as_os_str().is_empty() && !folder.exists() {
        folder = folder.parent()?;
    }
    if folder.as_os_str().is_empty() {
        folder = Path::new(".");
    }
    if !folder.is_dir() {
        return Some(format!("`{}` is not a folder", folder.display()));
    }
    let probe = folder.join(format!(".invoiceguard-check-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => Some(format!(
            "cannot create `{}` in `{}`: {e}",
            path.display(),
            folder.display()
        )),
    }
}

/// The last `window` bytes of a file.
fn read_tail(path: &Path, window: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(window)))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    Ok(tail)
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

impl FileSink {
    /// The sink of an `[[audit.sinks]]` entry with `file = "…"`.
    pub(crate) fn new(sink: &SinkConfig, path: &Path) -> Self {
        Self {
            name: sink.name.clone(),
            path: path.to_path_buf(),
            max_bytes: sink.max_file_bytes,
            keep: sink.keep_files,
            format: sink.format,
            file: None,
            written_before: None,
            started: false,
        }
    }

    /// Appends the events (rotating first when they would not fit) and syncs them; after a
    /// start, events the file already ends with are skipped.
    pub(crate) fn send(&mut self, lines: &[Bytes]) -> Result<(), String> {
        if !self.started {
            self.cut_torn_line()
                .map_err(|e| format!("`{}`: {e}", self.path.display()))?;
            self.written_before = Some(self.last_lines());
            self.started = true;
        }
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        let mut skipped = 0;
        for line in lines {
            let start = bytes.len();
            encode(line, self.format, &mut bytes);
            if let Some(written) = &self.written_before {
                if written.contains(&bytes[start..]) {
                    bytes.truncate(start);
                    skipped += 1;
                    continue;
                }
                self.written_before = None;
            }
            bytes.push(b'\n');
        }
        if skipped > 0 {
            tracing::info!(sink = %self.name, skipped, "events already in the file after a restart were not appended again");
            invoiceguard_telemetry::metrics()
                .audit_sink_duplicates_skipped
                .with_label_values(&[&self.name])
                .inc_by(skipped);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let result = self.write(&bytes);
        if result.is_err() {
            self.file = None;
        }
        result.map_err(|e| format!("`{}`: {e}", self.path.display()))
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let size = match &self.file {
            Some(file) => file.metadata()?.len(),
            None => std::fs::metadata(&self.path).map_or(0, |m| m.len()),
        };
        if size > 0 && size + bytes.len() as u64 > self.max_bytes {
            self.file = None;
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(append(&self.path)?),
        };
        file.write_all(bytes)?;
        file.sync_data()
    }

    /// A line the process was writing when it died has no newline: it is cut (its event is
    /// sent again whole), so the next one does not extend it.
    fn cut_torn_line(&self) -> std::io::Result<()> {
        let tail = match read_tail(&self.path, REPLAY_WINDOW) {
            Ok(tail) => tail,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        if tail.is_empty() || tail.ends_with(b"\n") {
            return Ok(());
        }
        let length = std::fs::metadata(&self.path)?.len();
        let torn = match memchr::memrchr(b'\n', &tail) {
            Some(at) => tail.len() - at - 1,
            None if tail.len() as u64 == length => tail.len(),
            None => return Ok(()), // one line longer than the window: left alone
        };
        OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .set_len(length - torn as u64)?;
        tracing::warn!(sink = %self.name, file = %self.path.display(), bytes = torn, "a torn last line was cut from the sink's file; its event is written again");
        Ok(())
    }

    /// The whole lines of the file's last [`REPLAY_WINDOW`] bytes (of its `.1` too when the
    /// file is shorter): the events a replay after a crash can repeat.
    fn last_lines(&self) -> HashSet<Vec<u8>> {
        let mut lines = HashSet::new();
        let mut window = REPLAY_WINDOW;
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(".1");
        for path in [self.path.clone(), PathBuf::from(rotated)] {
            let Ok(tail) = read_tail(&path, window) else {
                break;
            };
            window = window.saturating_sub(tail.len() as u64);
            let whole = tail.len() as u64 == std::fs::metadata(&path).map_or(0, |m| m.len());
            let mut pieces: Vec<&[u8]> = tail.split(|b| *b == b'\n').collect();
            pieces.pop(); // after the last newline: empty, or a torn line
            if !whole && !pieces.is_empty() {
                pieces.remove(0); // the window may start inside a line
            }
            lines.extend(
                pieces
                    .into_iter()
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
            if window == 0 {
                break;
            }
        }
        lines
    }

    /// `path.N-1` → `path.N` … `path` → `path.1`; what would be `path.keep+1` is removed.
    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        match std::fs::remove_file(numbered(self.keep)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        for n in (1..self.keep).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        std::fs::rename(&self.path, numbered(1))
    }
}

#[cfg(test)]
mod tests;
