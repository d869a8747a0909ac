//! The audit log: events appended to a JSON-lines file (and optionally stdout) in sequence.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::chain::{Chain, GENESIS};
use crate::config::AuditConfig;
use crate::event::AuditEvent;

/// How much of an existing file's end is read to find the last sequence number.
const TAIL_BYTES: u64 = 64 * 1024;

/// Writing an audit event failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit file could not be opened or read.
    #[error("cannot open audit file `{path}`: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An event could not be written.
    #[error("cannot write audit event to `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An event was written but could not be made durable in time.
    #[error("audit events in `{path}` cannot be made durable")]
    NotDurable {
        /// The file.
        path: PathBuf,
    },
    /// An event could not be encoded.
    #[error("cannot encode audit event: {0}")]
    Encode(#[from] serde_json::Error),
}

struct Writer {
    file: File,
    next_seq: u64,
    /// The hash of the last line written.
    prev_hash: String,
}

/// Appends events, numbered without gaps, to the audit file.
pub struct AuditLog {
    path: PathBuf,
    stdout: bool,
    chain: Chain,
    writer: Mutex<Writer>,
    syncer: Arc<Syncer>,
    /// The highest sequence number known to be on disk.
    durable: tokio::sync::watch::Sender<u64>,
}

/// The group commit: one `fsync` covers every line written before it.
struct Syncer {
    /// The highest sequence number written (maybe not yet on disk).
    written: AtomicU64,
    kicked: Mutex<bool>,
    wake: Condvar,
    closed: AtomicBool,
}

/// How long a caller waits for its event to be on disk.
const DURABLE_WAIT: Duration = Duration::from_secs(5);

impl AuditLog {
    /// Opens (or creates) the audit file; sequence numbers continue from its last event.
    pub fn open(config: &AuditConfig) -> Result<Self, AuditError> {
        let path = config.file.clone();
        let open_error = |source| AuditError::Open {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(open_error)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(open_error)?;
        let chain = match &config.hmac_key_file {
            Some(key_file) => Chain::keyed(
                std::fs::read(key_file)
                    .map_err(|source| AuditError::Open {
                        path: key_file.clone(),
                        source,
                    })?
                    .trim_ascii(),
            ),
            None => Chain::plain(),
        };
        let (last_seq, last_line) = last_event(&mut file).map_err(open_error)?;
        let prev_hash = match last_line {
            Some(line) => chain.hash(&line),
            None => GENESIS.to_owned(),
        };
        let sync_handle = file.try_clone().map_err(open_error)?;
        let syncer = Arc::new(Syncer {
            written: AtomicU64::new(last_seq),
            kicked: Mutex::new(false),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let (durable, _) = tokio::sync::watch::channel(last_seq);
        spawn_syncer(syncer.clone(), sync_handle, durable.clone(), path.clone());
        Ok(Self {
            path,
            stdout: config.stdout,
            chain,
            writer: Mutex::new(Writer {
                file,
                next_seq: last_seq + 1,
                prev_hash,
            }),
            syncer,
            durable,
        })
    }

    /// The audit file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Numbers the event and appends it as one line, in one write. Returns its sequence number.
    pub fn record(&self, mut event: AuditEvent) -> Result<u64, AuditError> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        event.seq = writer.next_seq;
        event.prev_hash.clone_from(&writer.prev_hash);
        let mut line = serde_json::to_vec(&event)?;
        let hash = self.chain.hash(&line);
        line.push(b'\n');
        writer
            .file
            .write_all(&line)
            .map_err(|source| AuditError::Write {
                path: self.path.clone(),
                source,
            })?;
        writer.next_seq += 1;
        writer.prev_hash = hash;
        self.syncer.written.store(event.seq, Ordering::SeqCst);
        self.syncer.kick();
        if self.stdout {
            let mut out = std::io::stdout().lock();
            // stdout is a convenience copy; the file is the record.
            let _ = out.write_all(&line).and_then(|()| out.flush());
        }
        Ok(event.seq)
    }
}

impl AuditLog {
    /// Appends the event and waits until it is on disk (`fsync`, shared with every event written
    /// meanwhile). An error means the event may not survive a crash: callers refuse what must
    /// not happen unrecorded.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<u64, AuditError> {
        let seq = self.record(event)?;
        let mut durable = self.durable.subscribe();
        match tokio::time::timeout(DURABLE_WAIT, durable.wait_for(|on_disk| *on_disk >= seq)).await
        {
            Ok(Ok(_)) => Ok(seq),
            _ => Err(AuditError::NotDurable {
                path: self.path.clone(),
            }),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.syncer.closed.store(true, Ordering::SeqCst);
        self.syncer.kick();
    }
}

impl Syncer {
    fn kick(&self) {
        *self.kicked.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_one();
    }
}

/// The thread that makes written events durable: woken by writes, it syncs once for all of them
/// and announces the highest sequence number on disk.
fn spawn_syncer(
    syncer: Arc<Syncer>,
    file: File,
    durable: tokio::sync::watch::Sender<u64>,
    path: PathBuf,
) {
    let spawned = std::thread::Builder::new().name("audit-fsync".to_owned()).spawn(move || {
        let mut failing = false;
        loop {
            {
                let kicked = syncer.kicked.lock().unwrap_or_else(|p| p.into_inner());
                let (mut kicked, _) = syncer
                    .wake
                    .wait_timeout_while(kicked, Duration::from_secs(1), |kicked| !*kicked)
                    .unwrap_or_else(|p| p.into_inner());
                *kicked = false;
            }
            if syncer.closed.load(Ordering::SeqCst) {
                return;
            }
            let target = syncer.written.load(Ordering::SeqCst);
            if target <= *durable.borrow() {
                continue;
            }
            match file.sync_data() {
                Ok(()) => {
                    failing = false;
                    durable.send_replace(target);
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::error!(%error, file = %path.display(), "audit events cannot be made durable");
                }
                Err(_) => {}
            }
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the audit fsync thread; sensitive requests will be refused");
    }
}

/// The `seq` and the bytes of the file's last complete event; 0 and none for an empty file.
fn last_event(file: &mut File) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut tail)?;
    for line in tail.split(|b| *b == b'\n').rev() {
        if let Some(seq) = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|event| event.get("seq").and_then(serde_json::Value::as_u64))
        {
            return Ok((seq, Some(line.to_vec())));
        }
    }
    Ok((0, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    fn event(request_id: &str) -> AuditEvent {
        AuditEvent {
            event_id: format!("ev-{request_id}"),
            seq: 0,
            stage: "complete",
            time: now_rfc3339(),
            request_id: request_id.to_owned(),
            actor: None,
            source: Source {
                ip: "127.0.0.1".to_owned(),
                user_agent: None,
            },
            request: RequestRecord {
                method: "GET".to_owned(),
                path: "/invoices".to_owned(),
                route: Some("/invoices".to_owned()),
                protocol: "HTTP/1.1".to_owned(),
            },
            action: Some("invoice:list".to_owned()),
            resource: None,
            break_glass_reason: None,
            decision: DecisionRecord {
                effect: "deny",
                reason: "unauthenticated",
                policies: vec![],
                policy_version: "v".to_owned(),
                detail: Some("missing_token".to_owned()),
                shadow: None,
            },
            outcome: Outcome {
                status: 401,
                upstream_status: None,
                duration_ms: 0.1,
                error_side: Some("client"),
                export_rows: None,
            },
            severity: "warning",
            prev_hash: String::new(),
        }
    }

    #[test]
    fn sequence_continues_after_reopen() {
        let dir = std::env::temp_dir().join(format!("invoiceguard-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = AuditConfig {
            file: dir.join("nested/audit.jsonl"),
            stdout: false,
            hmac_key_file: None,
            sinks: Vec::new(),
            ..AuditConfig::default()
        };
        let log = AuditLog::open(&config).unwrap();
        assert_eq!(log.record(event("a")).unwrap(), 1);
        assert_eq!(log.record(event("b")).unwrap(), 2);
        drop(log);
        let log = AuditLog::open(&config).unwrap();
        assert_eq!(log.record(event("c")).unwrap(), 3);
        let text = std::fs::read_to_string(&config.file).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["request_id"], "c");
        assert_eq!(lines[2]["seq"], 3);
        assert_eq!(lines[0]["decision"]["effect"], "deny");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config.file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
