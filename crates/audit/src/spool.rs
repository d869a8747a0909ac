//! The spool folder: events in segment files named by their first sequence number
//! (`00000000000000000001.jsonl`), the last one open for appending; and each sink's cursor
//! (`<sink>.cursor`: a segment and a byte offset in it). A segment is closed once a later one
//! exists, so a reader that reaches its end moves on to the next.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use crate::at_rest::{Decoded, LineDecoder};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The file name of the segment whose first event has sequence number `first_seq`.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.jsonl"))
}

/// The segments of a spool folder, oldest first: their first sequence numbers and paths.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first_seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first_seq) = first_seq {
            found.push((first_seq, path));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// A position in the spool: a segment (its first sequence number) and a byte offset in it.
/// `Cursor::default()` is before the first event of the oldest segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The segment's first sequence number.
    pub segment: u64,
    /// Bytes into the segment.
    pub offset: u64,
}

/// The cursor file of a sink.
pub fn cursor_path(dir: &Path, sink: &str) -> PathBuf {
    dir.join(format!("{sink}.cursor"))
}

/// A sink's saved cursor; the start of the spool when it has none.
pub fn read_cursor(dir: &Path, sink: &str) -> Cursor {
    std::fs::read_to_string(cursor_path(dir, sink))
        .ok()
        .and_then(|text| {
            let (segment, offset) = text.trim().split_once(' ')?;
            Some(Cursor {
                segment: segment.parse().ok()?,
                offset: offset.parse().ok()?,
            })
        })
        .unwrap_or_default()
}

/// Saves a sink's cursor (write and rename: never half a cursor).
pub(crate) fn save_cursor(dir: &Path, sink: &str, cursor: Cursor) {
    let path = cursor_path(dir, sink);
    let result = crate::log::write_private(
        &path,
        format!("{} {}", cursor.segment, cursor.offset).as_bytes(),
    );
    if let Err(error) = result {
        tracing::warn!(%error, cursor = %path.display(), "sink cursor not saved; events may be sent again");
    }
}

/// The sequence number of the last event before `cursor` (what a sink has delivered): the one
/// whose line ends at the cursor, or the one before the segment's first when the cursor is at
/// its start; 0 for an empty spool.
pub(crate) fn seq_before(dir: &Path, cursor: Cursor) -> u64 {
    let Ok(segments) = segments(dir) else {
        return 0;
    };
    let Some((first, path)) = segments.iter().find(|(first, _)| *first >= cursor.segment) else {
        return segments.last().map_or(0, |(first, path)| {
            last_seq_in(path, u64::MAX).unwrap_or(first.saturating_sub(1))
        });
    };
    if *first != cursor.segment || cursor.offset == 0 {
        return first.saturating_sub(1);
    }
    last_seq_in(path, cursor.offset).unwrap_or(first.saturating_sub(1))
}

/// The `seq` of the last whole line of `path` ending at or before `end`.
fn last_seq_in(path: &Path, end: u64) -> Option<u64> {
    const TAIL: u64 = 64 * 1024;
    let mut file = std::fs::File::open(path).ok()?;
    let end = end.min(file.metadata().ok()?.len());
    let start = end.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = vec![0; usize::try_from(end - start).ok()?];
    file.read_exact(&mut tail).ok()?;
    let mut decoder = LineDecoder::for_segment(path).ok()?;
    tail.split(|b| *b == b'\n')
        .rev()
        .filter(|line| !line.is_empty())
        .find_map(|line| {
            let Decoded::Event(plain) = decoder.line(line) else {
                return None;
            };
            serde_json::from_slice::<serde_json::Value>(&plain)
                .ok()?
                .get("seq")?
                .as_u64()
        })
}

/// The complete lines from `cursor`, at most about `max_bytes`, and the cursor after them. At
/// the end of a closed segment it moves on to the next; a cursor whose segment is gone (removed
/// by hand) moves to the oldest segment after it, with a warning. The lines are read into
/// `buffer`, whose memory is used again for the next batch once this one's lines are dropped (a
/// new allocation each time cost page faults and cold-cache copies).
pub(crate) fn read_batch(
    dir: &Path,
    mut cursor: Cursor,
    max_bytes: u64,
    buffer: &mut BytesMut,
) -> std::io::Result<(Vec<Bytes>, Cursor)> {
    let segments = segments(dir)?;
    loop {
        let Some(index) = segments
            .iter()
            .position(|(first, _)| *first >= cursor.segment)
        else {
            return Ok((Vec::new(), cursor));
        };
        let (first, path) = &segments[index];
        if *first != cursor.segment {
            if cursor.segment != 0 {
                tracing::warn!(
                    missing = cursor.segment,
                    next = first,
                    "a sink's segment is gone; it goes on with the next one"
                );
            }
            cursor = Cursor {
                segment: *first,
                offset: 0,
            };
        }
        let mut file = std::fs::File::open(path)?;
        let length = file.metadata()?.len();
        if length <= cursor.offset {
            match segments.get(index + 1) {
                // Closed and read to its end: on to the next segment.
                Some((next, _)) => {
                    cursor = Cursor {
                        segment: *next,
                        offset: 0,
                    };
                    continue;
                }
                None => return Ok((Vec::new(), cursor)),
            }
        }
        file.seek(SeekFrom::Start(cursor.offset))?;
        // One buffer, read at once; the lines are slices of it (no copy each). A segment only
        // grows, so the bytes below its length are there to read.
        let want = usize::try_from(max_bytes.min(length - cursor.offset)).unwrap_or(0);
        buffer.clear();
        buffer.resize(want, 0);
        file.read_exact(buffer)?;
        let Some(end) = memchr::memrchr(b'\n', buffer) else {
            return Ok((Vec::new(), cursor));
        };
        let bytes = buffer.split_to(end + 1).freeze();
        // A sealed segment's lines are opened (its header read when the batch starts past it).
        let mut decoder = match cursor.offset {
            0 => LineDecoder::new(),
            _ => LineDecoder::for_segment(path)?,
        };
        let mut lines = Vec::new();
        let mut start = 0;
        for at in memchr::memchr_iter(b'\n', &bytes[..=end]) {
            if at > start {
                match decoder.line(&bytes[start..at]) {
                    Decoded::Event(Cow::Borrowed(_)) => lines.push(bytes.slice(start..at)),
                    Decoded::Event(Cow::Owned(plain)) => lines.push(Bytes::from(plain)),
                    Decoded::Header => {}
                    Decoded::Unreadable(why) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "`{}` at byte {}: {why}",
                                path.display(),
                                cursor.offset + start as u64
                            ),
                        ));
                    }
                }
            }
            start = at + 1;
        }
        cursor.offset += end as u64 + 1;
        return Ok((lines, cursor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_only_complete_lines_and_cross_closed_segments() {
        let dir = std::env::temp_dir().join(format!("invoiceguard-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(segment_path(&dir, 1), "{\"a\":1}\n{\"b\":2}\n").unwrap();
        std::fs::write(segment_path(&dir, 3), "{\"c\":3}\n{\"d\":").unwrap();
        std::fs::write(dir.join("siem.cursor"), "garbage").unwrap();
        assert_eq!(read_cursor(&dir, "siem"), Cursor::default());
        // One buffer for every batch, as a sink has.
        let mut buffer = BytesMut::new();
        let (lines, next) = read_batch(&dir, Cursor::default(), 1 << 20, &mut buffer).unwrap();
        assert_eq!(lines.len(), 2);
        // Kept while the next batch is read (a sink still sending it): not written over.
        let first_batch = lines;
        assert_eq!(
            next,
            Cursor {
                segment: 1,
                offset: 16
            }
        );
        let (lines, next) = read_batch(&dir, next, 1 << 20, &mut buffer).unwrap();
        assert_eq!(lines, vec![b"{\"c\":3}".to_vec()], "on to the next segment");
        assert_eq!(
            first_batch,
            vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert_eq!(
            next,
            Cursor {
                segment: 3,
                offset: 8
            }
        );
        let (lines, same) = read_batch(&dir, next, 1 << 20, &mut buffer).unwrap();
        assert!(
            lines.is_empty() && same == next,
            "a half-written line waits"
        );
        save_cursor(&dir, "siem", next);
        assert_eq!(read_cursor(&dir, "siem"), next);
        std::fs::remove_file(segment_path(&dir, 1)).unwrap();
        let (lines, _) = read_batch(
            &dir,
            Cursor {
                segment: 1,
                offset: 8,
            },
            1 << 20,
            &mut buffer,
        )
        .unwrap();
        assert_eq!(lines.len(), 1, "a removed segment is skipped");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
