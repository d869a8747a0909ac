//! The file sink: events appended to a file (for a log shipper to tail), rotated by size —
//! `audit.log` becomes `audit.log.1`, `.1` becomes `.2`… and the oldest beyond `keep_files` is
//! removed. A batch is delivered once it is on disk (`fsync`).

use bytes::Bytes;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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
            None => self.file.insert(append(&self.path)?),
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
    fn a_missing_folder_is_made_and_an_unwritable_one_reported() {
        let dir = std::env::temp_dir().join(format!("invoiceguard-sinkdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("a/b/audit.log");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(problem(&path), None, "a folder that can be made is fine");
        assert!(!dir.join("a").exists(), "check creates nothing");
        prepare(&path).unwrap();
        assert!(path.is_file());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(problem(&dir).unwrap().contains("is a folder"));
        // A file where a folder should be: no folder can be made there, whoever runs.
        let blocker = dir.join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let under_a_file = blocker.join("sub/audit.log");
        assert!(problem(&under_a_file).unwrap().contains("is not a folder"));
        assert!(
            prepare(&under_a_file)
                .unwrap_err()
                .contains("cannot create the folder")
        );
        // A read-only folder above (root writes anywhere: then only the case above applies).
        let locked = dir.join("locked");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        let probe = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(locked.join("x"));
        if probe.is_err() {
            let why = problem(&locked.join("sub/audit.log")).unwrap();
            assert!(why.contains("cannot create"), "{why}");
            assert!(prepare(&locked.join("sub/audit.log")).is_err());
        }
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

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
