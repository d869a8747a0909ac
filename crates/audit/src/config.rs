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
    /// Collectors the events are shipped to, each with its own cursor (`[[audit.sinks]]`).
    #[serde(default)]
    pub sinks: Vec<crate::ship::SinkConfig>,
    /// Actions forwarded only once an `authorized` event is on disk (`fsync`).
    #[serde(default = "default_sensitive")]
    pub sensitive_actions: Vec<String>,
    /// Forward sensitive requests even when their event cannot be made durable (logged). Off by
    /// default: such requests are refused (503).
    #[serde(default)]
    pub fail_open: bool,
}

fn default_sensitive() -> Vec<String> {
    [
        "invoice:approve",
        "export:create",
        "partner:update_bank_account",
        "user:assign_role",
        "settings:update",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            file: default_file(),
            stdout: false,
            hmac_key_file: None,
            sinks: Vec::new(),
            sensitive_actions: default_sensitive(),
            fail_open: false,
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
        for (index, sink) in self.sinks.iter().enumerate() {
            problems.extend(sink.validate(index));
        }
        let mut names: Vec<&str> = self.sinks.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|pair| pair[0] == pair[1]) {
            problems
                .push("audit.sinks: names must be unique (they name the cursor files)".to_owned());
        }
        problems
    }
}
