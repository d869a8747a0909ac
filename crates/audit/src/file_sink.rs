//! The file sink: events appended to a file (for a log shipper to tail), rotated by size —
//! `audit.log` becomes `audit.log.1`, `.1` becomes `.2`… and the oldest beyond `keep_files` is
//! removed. A batch is delivered once it is on disk (`fsync`).

use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::ship::{Format, SinkConfig, encode};

/// A file and its rotation.
pub(crate) struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    format: Format,
    file: Option<File>,
}

impl FileSink {
    /// The sink of an `[[audit.sinks]]` entry with `file = "…"`.
    pub(crate) fn new(sink: &SinkConfig, path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            max_bytes: sink.max_file_bytes,
            keep: sink.keep_files,
            format: sink.format,
            file: None,
        }
    }

    /// Appends the events (rotating first when they would not fit) and syncs them.
    pub(crate) fn send(&mut self, lines: &[Bytes]) -> Result<(), String> {
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            encode(line, self.format, &mut bytes);
            bytes.push(b'\n');
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
            None => self.file.insert(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&self.path)?,
            ),
        };
        file.write_all(bytes)?;
        file.sync_data()
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
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_the_configured_number() {
        let dir =
            std::env::temp_dir().join(format!("invoiceguard-filesink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let config: SinkConfig = toml::from_str(&format!(
            "name = \"f\"\nfile = {path:?}\nmax_file_bytes = 4096\nkeep_files = 2"
        ))
        .unwrap();
        let mut sink = FileSink::new(&config, &path);
        let line = Bytes::from(format!("{{\"seq\":1,\"pad\":\"{}\"}}", "x".repeat(1000)));
        for _ in 0..20 {
            sink.send(std::slice::from_ref(&line)).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
        for name in &names {
            let size = std::fs::metadata(dir.join(name)).unwrap().len();
            assert!(size <= 4096, "{name}: {size}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
