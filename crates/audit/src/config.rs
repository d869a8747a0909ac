//! The `[audit]` section of the configuration.

use std::path::PathBuf;

use serde::Deserialize;

/// Where audit events are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The JSON-lines file events are appended to; relative paths are taken from the configuration
    /// file's folder. Created (mode 0600) when missing.
    #[serde(default = "default_file")]
    pub file: PathBuf,
    /// Also write every event to standard output, one JSON object per line.
    #[serde(default)]
    pub stdout: bool,
    /// A file holding a secret that keys the hash chain (HMAC-SHA256); a plain SHA-256 chain when
    /// absent.
    pub hmac_key_file: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            file: default_file(),
            stdout: false,
            hmac_key_file: None,
        }
    }
}

fn default_file() -> PathBuf {
    PathBuf::from("audit.jsonl")
}

impl AuditConfig {
    /// Checks the section, naming each problem with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.file.as_os_str().is_empty() {
            problems.push("audit.file: must not be empty".to_owned());
        } else if self.file.is_dir() {
            problems.push(format!("audit.file: `{}` is a folder", self.file.display()));
        }
        if let Some(key) = &self.hmac_key_file
            && std::fs::read(key).map_or(true, |secret| secret.trim_ascii().len() < 16)
        {
            problems.push(format!(
                "audit.hmac_key_file: `{}` must hold a secret of at least 16 bytes",
                key.display()
            ));
        }
        problems
    }
}
