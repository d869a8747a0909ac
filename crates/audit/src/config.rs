//! The `[audit]` section of the configuration.

use std::path::PathBuf;

use serde::Deserialize;

use crate::redact::RedactConfig;

/// Where audit events are written, and where they are shipped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The spool folder: events are appended to segment files there (`<first seq>.jsonl`), and
    /// each sink keeps its cursor there. Relative paths are taken from the configuration file's
    /// folder; created (mode 0700) when missing.
    #[serde(default = "default_spool")]
    pub spool: PathBuf,
    /// A segment is closed and a new one started once it holds this many bytes.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// The most bytes the spool may hold. Closed segments every sink has delivered are removed;
    /// a spool at its cap refuses new events, and requests with them (503) unless `fail_open`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Names this gateway in its events (`instance`); the host name when absent.
    pub instance: Option<String>,
    /// Also write every event to standard output, one JSON object per line.
    #[serde(default)]
    pub stdout: bool,
    /// A file holding a secret that keys the hash chain (HMAC-SHA256) and `hash` redaction; a
    /// plain SHA-256 chain when absent.
    pub hmac_key_file: Option<PathBuf>,
    /// A file holding the key that seals new spool segments (AES-256-GCM, a data key per
    /// segment wrapped by this one; `invoiceguard audit keygen` writes one); plaintext segments
    /// when absent.
    pub encryption_key_file: Option<PathBuf>,
    /// Files of older keys, kept to read the segments they sealed after a rotation.
    #[serde(default)]
    pub decryption_key_files: Vec<PathBuf>,
    /// Delivered segments kept as signed, compressed archives instead of deleted
    /// (`[audit.archive]`); deleted when absent.
    #[serde(default)]
    pub archive: Option<crate::archive::ArchiveConfig>,
    /// What is masked or hashed before an event is written (`[audit.redact]`).
    #[serde(default)]
    pub redact: RedactConfig,
    /// Where the events are delivered, each sink with its own cursor (`[[audit.sinks]]`).
    #[serde(default)]
    pub sinks: Vec<crate::sinks::SinkConfig>,
    /// Actions forwarded only once an `authorized` event is on disk (`fsync`).
    #[serde(default = "default_sensitive")]
    pub sensitive_actions: Vec<String>,
    /// Serve requests even when their events cannot be written (logged and counted). Off by
    /// default: while the spool cannot be written, requests are refused (503).
    #[serde(default)]
    pub fail_open: bool,
    /// A sink that has not delivered an event this many seconds after it was written is
    /// lagging: an `audit:sink_lagging` event is recorded (and `audit:sink_recovered` once it
    /// has caught up), so the other sinks — and the lagging one, late — carry the gap. 0: never.
    #[serde(default = "default_lag_alert_s")]
    pub lag_alert_s: u64,
}

fn default_lag_alert_s() -> u64 {
    60
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
            spool: default_spool(),
            segment_bytes: default_segment_bytes(),
            max_bytes: default_max_bytes(),
            instance: None,
            stdout: false,
            hmac_key_file: None,
            encryption_key_file: None,
            decryption_key_files: Vec::new(),
            archive: None,
            redact: RedactConfig::default(),
            sinks: Vec::new(),
            sensitive_actions: default_sensitive(),
            fail_open: false,
            lag_alert_s: default_lag_alert_s(),
        }
    }
}

fn default_spool() -> PathBuf {
    PathBuf::from("audit")
}

fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_max_bytes() -> u64 {
    1024 * 1024 * 1024
}

impl AuditConfig {
    /// The instance name events carry: configured, or the host name.
    pub fn instance(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "invoiceguard".to_owned())
        })
    }

    /// Checks the section, naming each problem with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.spool.as_os_str().is_empty() {
            problems.push("audit.spool: must not be empty".to_owned());
        } else if self.spool.exists() && !self.spool.is_dir() {
            problems.push(format!(
                "audit.spool: `{}` is not a folder",
                self.spool.display()
            ));
        } else if self.spool.is_dir()
            && let Err(error) = crate::log::check_private(&self.spool)
        {
            problems.push(format!("audit.spool: {error}"));
        }
        if let Some(archive) = &self.archive
            && archive.dir.is_dir()
            && let Err(error) = crate::log::check_private(&archive.dir)
        {
            problems.push(format!("audit.archive.dir: {error}"));
        }
        if let Some(instance) = &self.instance
            && (instance.is_empty()
                || instance.len() > 255
                || !instance.bytes().all(|b| b.is_ascii_graphic()))
        {
            problems.push("audit.instance: 1 to 255 printable characters".to_owned());
        }
        if self.segment_bytes < 4096 {
            problems.push("audit.segment_bytes: at least 4096".to_owned());
        }
        if self.max_bytes < self.segment_bytes.saturating_mul(2) {
            problems.push(
                "audit.max_bytes: at least twice audit.segment_bytes (a closed segment and the open one)"
                    .to_owned(),
            );
        }
        if let Some(key) = &self.hmac_key_file {
            match std::fs::read(key) {
                Err(error) => problems.push(format!(
                    "audit.hmac_key_file: cannot read `{}`: {error}",
                    key.display()
                )),
                Ok(secret) if secret.trim_ascii().len() < 16 => problems.push(format!(
                    "audit.hmac_key_file: `{}` holds {} bytes; the secret must be at least 16",
                    key.display(),
                    secret.trim_ascii().len()
                )),
                Ok(_) => {}
            }
        }
        if let Err(problem) = crate::at_rest::Keyring::load(
            self.encryption_key_file.as_deref(),
            &self.decryption_key_files,
        ) {
            problems.push(format!(
                "audit.encryption_key_file / decryption_key_files: {problem}"
            ));
        }
        if let Some(archive) = &self.archive {
            problems.extend(archive.validate());
        }
        problems.extend(self.redact.validate(self.hmac_key_file.is_some()));
        for (index, sink) in self.sinks.iter().enumerate() {
            problems.extend(sink.validate(index));
            if let Some(file) = &sink.file
                && let Some(problem) = crate::sinks::problem(file)
            {
                problems.push(format!("audit.sinks[{index}].file: {problem}"));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_short_hmac_key_file_is_named_for_what_it_is() {
        let dir = std::env::temp_dir().join(format!("invoiceguard-hmac-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = |key: &std::path::Path| AuditConfig {
            hmac_key_file: Some(key.to_owned()),
            ..AuditConfig::default()
        };
        let missing = config(&dir.join("missing.key")).validate();
        assert!(
            missing
                .iter()
                .any(|p| p.starts_with("audit.hmac_key_file: cannot read `")
                    && p.contains("missing.key")),
            "{missing:?}"
        );
        std::fs::write(dir.join("short.key"), "short\n").unwrap();
        let short = config(&dir.join("short.key")).validate();
        assert!(
            short
                .iter()
                .any(|p| p.contains("holds 5 bytes; the secret must be at least 16")),
            "{short:?}"
        );
        std::fs::write(dir.join("good.key"), "sixteen-bytes-or-more\n").unwrap();
        assert!(
            !config(&dir.join("good.key"))
                .validate()
                .iter()
                .any(|p| p.contains("hmac_key_file"))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
