//! The audit log: events appended, numbered and chained, to the spool's open segment, made
//! durable by a group-committed `fsync`, and optionally echoed to stdout. Segments are closed at
//! `segment_bytes`; closed segments every sink has delivered are removed; the spool never grows
//! past `max_bytes`.
//!
//! A write that fails (a full disk) or is cut short never leaves part of an event behind: the
//! segment is cut back to its last whole event, so the next event starts a line of its own. The
//! event itself is kept in memory, in order, and written as soon as the spool takes events again
//! (bounded: [`MAX_HELD`]); while any is kept, the gateway forwards nothing. A segment whose
//! last line was torn by a crash is repaired when the spool is opened: the torn bytes are moved
//! to a `torn-*.bin` file beside it and an event reports the repair.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use invoiceguard_telemetry::metrics;

use crate::at_rest::{Decoded, Keyring, LineDecoder, Sealer};
use crate::chain::{Chain, GENESIS};
use crate::config::AuditConfig;
use crate::event::AuditEvent;
use crate::redact::Redactor;
use crate::sinks::SinkConfig;
use crate::spool::{read_cursor, segment_path, segments};

/// How much of a segment's end is read to find its last sequence number.
const TAIL_BYTES: u64 = 64 * 1024;

/// At most this many events are kept in memory while the spool cannot be written; refusals
/// (requests not forwarded) may use half of it, so forwarded requests' events always find room
/// (no request is forwarded while any event is kept, so their number is bounded by the requests
/// in flight when the disk failed).
pub(crate) const MAX_HELD: usize = 10_000;

/// The room kept at the end of the spool for the events of requests already forwarded (a
/// quarter of a small cap): new requests are refused before it is touched.
const RESERVE_BYTES: u64 = 256 * 1024;

/// Writing an audit event failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The spool or a key file could not be opened or read.
    #[error("cannot open `{path}`: {source}")]
    Open {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file sink's file cannot be written (its folder cannot be made, or the file opened).
    #[error("audit sink `{name}`: {why}")]
    Sink {
        /// The sink's name.
        name: String,
        /// Why.
        why: String,
    },
    /// An event could not be written.
    #[error("cannot write audit event to `{path}`: {source}")]
    Write {
        /// The segment.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The spool holds `max_bytes` and no sink has delivered a closed segment that could go.
    #[error(
        "the audit spool `{path}` is full ({max_bytes} bytes) and its sinks have not caught up"
    )]
    Full {
        /// The spool folder.
        path: PathBuf,
        /// Its cap.
        max_bytes: u64,
    },
    /// An event was written but could not be made durable in time.
    #[error("audit events in `{path}` cannot be made durable")]
    NotDurable {
        /// The spool folder.
        path: PathBuf,
    },
    /// An event could not be encoded.
    #[error("cannot encode audit event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The encryption keys cannot be used, or an event could not be sealed.
    #[error("audit encryption: {0}")]
    Key(String),
    /// The archive cannot be set up (its key, its folder).
    #[error("audit archive: {0}")]
    Archive(String),
    /// The spool (or a file in it) may be read by other users.
    #[error(
        "`{path}` has mode {mode:o}: the audit spool must be readable by its owner only (as ssh requires of private keys); run `chmod {fix} {path}`"
    )]
    Exposed {
        /// The folder or file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to set (`700` for a folder, `600` for a file).
        fix: &'static str,
    },
    /// The event could not be written now; it is kept in memory and written, in order, as soon
    /// as the spool takes events again.
    #[error(
        "audit event kept in memory ({waiting} waiting) until the spool can be written: {cause}"
    )]
    Held {
        /// Events waiting, this one included.
        waiting: usize,
        /// Why it could not be written.
        cause: Box<AuditError>,
    },
}

/// What an event is for, which decides what happens when it cannot be written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// What already happened (a forwarded request, an admin operation): kept in memory until
    /// it can be written; may use the spool's reserve.
    Happened,
    /// A request refused before forwarding: kept while there is room for half of
    /// [`MAX_HELD`]; leaves the reserve to forwarded requests.
    Refusal,
    /// The event of a request about to be forwarded: never kept (the request is refused instead).
    BeforeForward,
}

struct Writer {
    /// The open segment.
    file: File,
    file_path: PathBuf,
    /// Its name: the seq its first event has (or will have).
    file_first_seq: u64,
    file_bytes: u64,
    /// Bytes in every segment.
    spool_bytes: u64,
    next_seq: u64,
    /// The hash of the last line written.
    prev_hash: String,
    /// Part of a line could not be cut after a failed write: nothing is appended until it is.
    torn: bool,
    /// Events not yet written (redacted, not yet numbered), oldest first.
    held: std::collections::VecDeque<AuditEvent>,
    /// Seals the open segment's lines (`[audit] encryption_key_file`).
    sealer: Option<Sealer>,
    /// A sealed line, written in place of the plaintext one.
    sealed: Vec<u8>,
}

/// Appends events, numbered without gaps, to the spool.
pub struct AuditLog {
    dir: PathBuf,
    /// Names this gateway in every event.
    instance: String,
    stdout: bool,
    segment_bytes: u64,
    max_bytes: u64,
    /// The sinks, whose cursors decide which closed segments may go.
    sink_configs: Vec<SinkConfig>,
    /// How long an undelivered event makes its sink lagging (zero: never).
    lag_alert: Duration,
    /// The highest sequence number written, as the sinks see it.
    written_seq: Arc<AtomicU64>,
    chain: Chain,
    redactor: Redactor,
    /// The keys segments are sealed with (none: plaintext segments).
    keyring: Keyring,
    /// Where delivered segments go instead of being deleted (`[audit.archive]`).
    archive: Option<ArchiveHandle>,
    writer: Mutex<Writer>,
    syncer: Arc<Syncer>,
    /// Whether the last write succeeded.
    writable: AtomicBool,
    /// Events kept in memory (the writer's count, for readers without its lock).
    held: std::sync::atomic::AtomicUsize,
    /// Bytes in the spool (the writer's count, for readers without its lock).
    spool_bytes: AtomicU64,
    /// The highest sequence number known to be on disk.
    durable: tokio::sync::watch::Sender<u64>,
}

/// What the archive thread has to tell, to be recorded: action, severity, detail.
type Notices = Mutex<Vec<(&'static str, &'static str, String)>>;

/// The archive thread, and what it has to tell.
struct ArchiveHandle {
    archiver: Arc<crate::archive::Archiver>,
    /// Segments handed to the thread.
    queue: Mutex<std::sync::mpsc::Sender<PathBuf>>,
    /// Segments handed over and not yet archived (not handed twice).
    pending: Arc<Mutex<std::collections::HashSet<PathBuf>>>,
    /// Events to record (deletions, failures).
    notices: Arc<Notices>,
}

impl ArchiveHandle {
    fn start(archiver: crate::archive::Archiver) -> Self {
        let archiver = Arc::new(archiver);
        let (queue, segments) = std::sync::mpsc::channel::<PathBuf>();
        let pending = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let notices = Arc::new(Mutex::new(Vec::new()));
        let (worker, done, told) = (archiver.clone(), pending.clone(), notices.clone());
        let spawned = std::thread::Builder::new()
            .name("audit-archive".to_owned())
            .spawn(move || {
                while let Ok(segment) = segments.recv() {
                    archive_one(&worker, &segment, &told);
                    done.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&segment);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the audit archive thread; delivered segments stay in the spool");
        }
        Self {
            archiver,
            queue: Mutex::new(queue),
            pending,
            notices,
        }
    }

    /// Hands a delivered segment to the thread (once).
    fn send(&self, segment: PathBuf) {
        if self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(segment.clone())
        {
            let _ = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(segment);
        }
    }
}

/// Archives one delivered segment and removes it from the spool; then applies retention.
fn archive_one(archiver: &crate::archive::Archiver, segment: &Path, notices: &Notices) {
    if !segment.exists() {
        // Archived and removed already (at the cap, while it waited here).
        return;
    }
    let mut told = Vec::new();
    match archiver.archive(segment) {
        Ok(manifest) => {
            if let Some(manifest) = manifest {
                tracing::info!(segment = %segment.display(), first_seq = manifest.first_seq, last_seq = manifest.last_seq, "delivered audit segment archived");
            }
            remove_segment(segment);
            for deleted in archiver.retain() {
                told.push(("audit:archive_deleted", "warning", deleted));
            }
        }
        Err(error) => {
            tracing::error!(%error, "a delivered audit segment could not be archived; it stays in the spool");
            told.push((
                "audit:archive_failed",
                "error",
                format!(
                    "`{}` could not be archived into `{}` (it stays in the spool): {error}",
                    segment.display(),
                    archiver.dir().display()
                ),
            ));
        }
    }
    notices
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(told);
}

/// What the fsync thread was woken for.
#[derive(Default)]
struct Kick {
    /// Lines were written since the last sync.
    pending: bool,
    /// Someone waits for them to be on disk.
    urgent: bool,
}

/// The files the fsync thread makes durable.
struct SyncFiles {
    /// The open segment.
    open: File,
    /// Segments closed since the last sync (synced before the open one is counted on disk).
    closed: Vec<File>,
    /// A segment was created: the folder's entry must be made durable too.
    dir_changed: bool,
    /// Delivered segments to remove: unlinking a full segment frees its pages and blocks, which
    /// takes milliseconds, so it is done here rather than on a request's thread.
    delivered: Vec<PathBuf>,
}

/// The group commit: one `fsync` covers every line written before it.
struct Syncer {
    /// What to sync; a rotation only swaps files here (the syncing happens on the fsync thread,
    /// never under the writer's lock).
    files: Mutex<SyncFiles>,
    /// The highest sequence number written (maybe not yet on disk).
    written: AtomicU64,
    /// The last event written: its seq and the hash of its line (the spool's head).
    head: Mutex<(u64, String)>,
    kicked: Mutex<Kick>,
    wake: Condvar,
    closed: AtomicBool,
}

/// The room an event's line is serialized into at first: a request's event is about 1 KiB.
const LINE_CAPACITY: usize = 2048;

/// How long a caller waits for its event to be on disk.
const DURABLE_WAIT: Duration = Duration::from_secs(5);

/// How long events nobody waits for may gather before one `fsync` covers them all. A durable
/// append (a sensitive request) does not wait for it.
const GROUP_WINDOW: Duration = Duration::from_millis(10);

impl AuditLog {
    /// Opens (or creates) the spool; sequence numbers and the chain continue from its last event.
    pub fn open(config: &AuditConfig) -> Result<Self, AuditError> {
        let dir = config.spool.clone();
        let open_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AuditError::Open { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(open_error(&dir))?;
        for sink in &config.sinks {
            if let Some(file) = &sink.file {
                crate::sinks::prepare(file).map_err(|why| AuditError::Sink {
                    name: sink.name.clone(),
                    why,
                })?;
            }
        }
        let secret = match &config.hmac_key_file {
            Some(key_file) => Some(
                std::fs::read(key_file)
                    .map_err(open_error(key_file))?
                    .trim_ascii()
                    .to_vec(),
            ),
            None => None,
        };
        let chain = secret.as_deref().map_or_else(Chain::plain, Chain::keyed);
        let redactor = Redactor::new(&config.redact, secret.as_deref());
        let keyring = Keyring::load(
            config.encryption_key_file.as_deref(),
            &config.decryption_key_files,
        )
        .map_err(AuditError::Key)?;
        crate::at_rest::install(&keyring);
        check_private(&dir)?;
        let archive = match &config.archive {
            Some(archive) => {
                let archiver =
                    crate::archive::Archiver::new(archive, chain.clone(), config.instance())
                        .map_err(AuditError::Archive)?;
                check_private(&archive.dir)?;
                Some(ArchiveHandle::start(archiver))
            }
            None => None,
        };
        let existing = segments(&dir).map_err(open_error(&dir))?;
        let repair = match existing.last() {
            Some((first_seq, path)) => {
                repair_tail(&dir, *first_seq, path).map_err(open_error(path))?
            }
            None => None,
        };
        let mut spool_bytes = 0;
        for (_, path) in &existing {
            spool_bytes += std::fs::metadata(path).map_err(open_error(path))?.len();
        }
        let (last_seq, last_line) = last_event(&existing).map_err(open_error(&dir))?;
        let prev_hash = match last_line {
            Some(line) => chain.hash(&line),
            None => GENESIS.to_owned(),
        };
        // Append to the newest segment, or start the next one: a sealed spool starts a segment
        // of its own at every start (its data key is new; a rotated key is used at once), and
        // so does a plain one after a sealed segment. A last segment without events (only a
        // header) is started again.
        let (file_first_seq, file_path) = match existing.last() {
            Some((first, path)) if *first > last_seq => {
                // Only a header (of a key that may have changed since): started again.
                if std::fs::metadata(path).map_err(open_error(path))?.len() > 0 {
                    OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|file| file.set_len(0))
                        .map_err(open_error(path))?;
                }
                (*first, path.clone())
            }
            Some((first, path))
                if keyring.current_id().is_none()
                    && !is_sealed(path).map_err(open_error(path))? =>
            {
                (*first, path.clone())
            }
            _ => (last_seq + 1, segment_path(&dir, last_seq + 1)),
        };
        let mut file = open_segment(&file_path).map_err(open_error(&file_path))?;
        let mut file_bytes = file.metadata().map_err(open_error(&file_path))?.len();
        let sealer = match file_bytes {
            0 => Sealer::new(&keyring, file_first_seq).map_err(AuditError::Key)?,
            _ => None,
        };
        if let Some(sealer) = &sealer {
            file.write_all(&sealer.header)
                .map_err(open_error(&file_path))?;
            file_bytes = sealer.header.len() as u64;
            spool_bytes += file_bytes;
        }
        let syncer = Arc::new(Syncer {
            files: Mutex::new(SyncFiles {
                open: file.try_clone().map_err(open_error(&file_path))?,
                closed: Vec::new(),
                dir_changed: false,
                delivered: Vec::new(),
            }),
            written: AtomicU64::new(last_seq),
            head: Mutex::new((last_seq, prev_hash.clone())),
            kicked: Mutex::new(Kick::default()),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let (durable, _) = tokio::sync::watch::channel(last_seq);
        spawn_syncer(syncer.clone(), durable.clone(), dir.clone());
        metrics()
            .audit_spool_bytes
            .set(i64::try_from(spool_bytes).unwrap_or(i64::MAX));
        let log = Self {
            dir,
            instance: config.instance(),
            stdout: config.stdout,
            segment_bytes: config.segment_bytes,
            max_bytes: config.max_bytes,
            sink_configs: config.sinks.clone(),
            lag_alert: Duration::from_secs(config.lag_alert_s),
            written_seq: Arc::new(AtomicU64::new(last_seq)),
            chain,
            redactor,
            keyring,
            archive,
            writer: Mutex::new(Writer {
                file,
                file_path,
                file_first_seq,
                file_bytes,
                spool_bytes,
                next_seq: last_seq + 1,
                prev_hash,
                torn: false,
                held: std::collections::VecDeque::new(),
                sealer,
                sealed: Vec::with_capacity(LINE_CAPACITY * 2),
            }),
            syncer,
            writable: AtomicBool::new(true),
            held: std::sync::atomic::AtomicUsize::new(0),
            spool_bytes: AtomicU64::new(spool_bytes),
            durable,
        };
        if let Some(repair) = repair {
            metrics().audit_spool_repairs.inc();
            tracing::error!(segment = %repair.segment.display(), offset = repair.offset, bytes = repair.bytes, kept_in = ?repair.kept_in, completed = repair.completed, "the audit spool's last line was torn (a crash or a full disk); repaired");
            let detail = repair.describe();
            if let Err(error) =
                log.record(AuditEvent::system("audit:spool_repaired", "error", detail))
            {
                tracing::error!(%error, "the spool repair could not be recorded");
            }
        }
        Ok(log)
    }

    /// Starts shipping to every configured sink (tasks on the current tokio runtime). A sink
    /// that lags records it in this log ([`AuditConfig::lag_alert_s`]).
    pub fn start_sinks(self: &Arc<Self>) {
        for sink in &self.sink_configs {
            tokio::spawn(crate::sinks::ship(
                sink.clone(),
                self.dir.clone(),
                self.written_seq.clone(),
                crate::sinks::LagWatch::new(&sink.name, self.lag_alert, Arc::downgrade(self)),
            ));
        }
    }

    /// The spool folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a new request's events can be written: the last write succeeded and the spool
    /// is short of its reserve. While it is not, the gateway refuses requests (unless
    /// `fail_open`); every refusal's event is another attempt (and a chance to remove what the
    /// sinks have delivered meanwhile).
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
            && self.held.load(Ordering::Relaxed) == 0
            && self.spool_bytes.load(Ordering::Relaxed) + self.reserve() <= self.max_bytes
    }

    /// How many events are kept in memory, waiting for the spool.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Called every few hundred milliseconds, so that a spool that failed recovers even when no
    /// request comes (a replica reported unready gets none): writes the events kept in memory
    /// if the spool takes them now; after a failed write with nothing kept, checks that the
    /// spool's folder takes a small file again; at the cap, removes what the sinks delivered.
    pub fn recover(&self) {
        self.record_archive_notices();
        let held = self.held() > 0;
        let failed = !self.writable.load(Ordering::Relaxed);
        let at_cap = self.spool_bytes.load(Ordering::Relaxed) + self.reserve() > self.max_bytes;
        if !held && !failed && !at_cap {
            return;
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if at_cap {
            self.remove_delivered(&mut writer, Removal::Now);
        }
        let result = if held {
            self.write_held(&mut writer).map_err(|e| e.to_string())
        } else if failed {
            probe(&self.dir).map_err(|e| e.to_string())
        } else {
            return;
        };
        self.writable.store(result.is_ok(), Ordering::Relaxed);
        if result.is_ok() {
            tracing::info!("the audit spool takes events again");
        }
    }

    /// Records what the archive thread has to tell (archives deleted by retention, a segment
    /// that could not be archived).
    fn record_archive_notices(&self) {
        let Some(archive) = &self.archive else { return };
        let notices =
            std::mem::take(&mut *archive.notices.lock().unwrap_or_else(|p| p.into_inner()));
        for (action, severity, detail) in notices {
            if let Err(error) = self.record(AuditEvent::system(action, severity, detail)) {
                tracing::error!(%error, action, "an archive event could not be recorded");
            }
        }
    }

    /// The room kept for the events of forwarded requests.
    fn reserve(&self) -> u64 {
        RESERVE_BYTES.min(self.max_bytes / 4)
    }

    /// The highest sequence number written.
    pub fn last_seq(&self) -> u64 {
        self.syncer.written.load(Ordering::SeqCst)
    }

    /// Redacts, numbers and chains the event and appends it as one line, in one write. Returns
    /// its sequence number. The spool's reserve may be used: this is for what already happened
    /// (a forwarded request, an admin operation). An event that cannot be written now is kept
    /// in memory and written as soon as it can be ([`AuditError::Held`]).
    pub fn record(&self, event: AuditEvent) -> Result<u64, AuditError> {
        self.record_for(event, Purpose::Happened)
    }

    /// Like [`AuditLog::record`], for a request refused before it was forwarded: the reserve
    /// is left to forwarded requests, and so is most of the memory for events kept.
    pub fn record_refusal(&self, event: AuditEvent) -> Result<u64, AuditError> {
        self.record_for(event, Purpose::Refusal)
    }

    /// The event of a request about to be forwarded (`stage: "authorized"`): written (not
    /// synced), or an error, and then the request must not be forwarded. Never kept in memory.
    pub fn record_before_forward(&self, event: AuditEvent) -> Result<u64, AuditError> {
        self.record_for(event, Purpose::BeforeForward)
    }

    fn record_for(&self, mut event: AuditEvent, purpose: Purpose) -> Result<u64, AuditError> {
        self.redactor.apply(&mut event);
        let limit = match purpose {
            Purpose::Happened => self.max_bytes,
            Purpose::Refusal | Purpose::BeforeForward => self.max_bytes - self.reserve(),
        };
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = self
            .write_held(&mut writer)
            .and_then(|()| self.append(&mut writer, &mut event, limit));
        self.writable.store(result.is_ok(), Ordering::Relaxed);
        let cause = match result {
            Ok(seq) => {
                metrics().audit_events_written.inc();
                return Ok(seq);
            }
            Err(cause) => cause,
        };
        metrics().audit_write_failures.inc();
        let room = match purpose {
            Purpose::Happened => MAX_HELD,
            Purpose::Refusal => MAX_HELD / 2,
            Purpose::BeforeForward => 0,
        };
        if writer.held.len() >= room {
            if purpose != Purpose::BeforeForward {
                metrics().audit_events_dropped.inc();
            }
            return Err(cause);
        }
        writer.held.push_back(event);
        self.count_held(&writer);
        Err(AuditError::Held {
            waiting: writer.held.len(),
            cause: Box::new(cause),
        })
    }

    /// Writes the events kept in memory, oldest first; stops at the first that cannot be.
    fn write_held(&self, writer: &mut Writer) -> Result<(), AuditError> {
        if writer.held.is_empty() {
            return Ok(());
        }
        let result = loop {
            let Some(mut event) = writer.held.pop_front() else {
                break Ok(());
            };
            if let Err(error) = self.append(writer, &mut event, self.max_bytes) {
                writer.held.push_front(event);
                break Err(error);
            }
            metrics().audit_events_written.inc();
        };
        self.count_held(writer);
        result
    }

    fn count_held(&self, writer: &Writer) {
        self.held.store(writer.held.len(), Ordering::Relaxed);
        metrics()
            .audit_events_held
            .set(i64::try_from(writer.held.len()).unwrap_or(i64::MAX));
    }

    /// Numbers, chains and appends one (redacted) event. A write that fails leaves nothing of
    /// the event behind: the segment is cut back to its last whole line (and while it cannot
    /// be, nothing is appended).
    fn append(
        &self,
        writer: &mut Writer,
        event: &mut AuditEvent,
        limit: u64,
    ) -> Result<u64, AuditError> {
        if writer.torn {
            writer
                .file
                .set_len(writer.file_bytes)
                .map_err(|source| AuditError::Write {
                    path: writer.file_path.clone(),
                    source,
                })?;
            writer.torn = false;
        }
        event.seq = writer.next_seq;
        event.prev_hash.clone_from(&writer.prev_hash);
        event.instance.clone_from(&self.instance);
        // Room for a usual event at once (growing from serde_json's default reallocates it
        // four times).
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        serde_json::to_writer(&mut line, &*event)?;
        let hash = self.chain.hash(&line);
        line.push(b'\n');
        let size = line.len() as u64;
        // A segment that holds no event yet (empty, or only its header) takes this one.
        let header_bytes = writer.sealer.as_ref().map_or(0, |s| s.header.len() as u64);
        if writer.file_bytes > header_bytes && writer.file_bytes + size > self.segment_bytes {
            self.rotate(writer, event.seq)?;
        }
        // Sealed, the line written is the sealed one; the chain stays over the plaintext.
        let mut sealed = std::mem::take(&mut writer.sealed);
        if let Some(sealer) = &mut writer.sealer {
            sealer
                .seal(&line[..line.len() - 1], &mut sealed)
                .map_err(AuditError::Key)?;
        }
        let result = self.write_line(writer, event, &line, &sealed, hash, limit);
        writer.sealed = sealed;
        result
    }

    /// Writes one event's line (`sealed` when the segment is sealed, else `line`).
    fn write_line(
        &self,
        writer: &mut Writer,
        event: &AuditEvent,
        line: &[u8],
        sealed: &[u8],
        hash: String,
        limit: u64,
    ) -> Result<u64, AuditError> {
        let written = if writer.sealer.is_some() {
            sealed
        } else {
            line
        };
        let size = written.len() as u64;
        if writer.spool_bytes + size > limit {
            self.remove_delivered(writer, Removal::Now);
            if writer.spool_bytes + size > limit {
                return Err(AuditError::Full {
                    path: self.dir.clone(),
                    max_bytes: self.max_bytes,
                });
            }
        }
        if let Err(source) = writer.file.write_all(written) {
            // Part of the line may be on disk: cut it, so the next event starts a line.
            writer.torn = writer.file.set_len(writer.file_bytes).is_err();
            return Err(AuditError::Write {
                path: writer.file_path.clone(),
                source,
            });
        }
        writer.next_seq += 1;
        writer.prev_hash = hash;
        writer.file_bytes += size;
        writer.spool_bytes += size;
        self.spool_bytes
            .store(writer.spool_bytes, Ordering::Relaxed);
        metrics()
            .audit_spool_bytes
            .set(i64::try_from(writer.spool_bytes).unwrap_or(i64::MAX));
        *self.syncer.head.lock().unwrap_or_else(|p| p.into_inner()) =
            (event.seq, writer.prev_hash.clone());
        self.syncer.written.store(event.seq, Ordering::SeqCst);
        self.written_seq.store(event.seq, Ordering::SeqCst);
        self.syncer.kick(false);
        if self.stdout {
            let mut out = std::io::stdout().lock();
            // stdout is a convenience copy; the spool is the record.
            let _ = out.write_all(line).and_then(|()| out.flush());
        }
        Ok(event.seq)
    }

    /// Closes the open segment and starts the one whose first event is `first_seq`; then removes
    /// what every sink has delivered. The closed segment is handed to the fsync thread, so the
    /// requests waiting for the writer never wait for a disk sync.
    fn rotate(&self, writer: &mut Writer, first_seq: u64) -> Result<(), AuditError> {
        let path = segment_path(&self.dir, first_seq);
        let write_error = |source| AuditError::Write {
            path: path.clone(),
            source,
        };
        let mut file = open_segment(&path).map_err(write_error)?;
        let sealer = Sealer::new(&self.keyring, first_seq).map_err(AuditError::Key)?;
        if let Some(sealer) = &sealer {
            file.write_all(&sealer.header).map_err(write_error)?;
        }
        let for_syncer = file.try_clone().map_err(write_error)?;
        {
            let mut files = self.syncer.files.lock().unwrap_or_else(|p| p.into_inner());
            let closed = std::mem::replace(&mut files.open, for_syncer);
            files.closed.push(closed);
            files.dir_changed = true;
        }
        self.syncer.kick(false);
        writer.file = file;
        writer.file_path = path;
        writer.file_first_seq = first_seq;
        writer.file_bytes = sealer.as_ref().map_or(0, |s| s.header.len() as u64);
        writer.spool_bytes += writer.file_bytes;
        writer.sealer = sealer;
        self.remove_delivered(writer, Removal::Later);
        Ok(())
    }

    /// Removes the closed segments every sink has moved past: `Now` when the spool is at its cap
    /// and needs the room for this event, else `Later`, by the fsync thread (their bytes no longer
    /// count from now). Without sinks, nothing: the spool is then the only copy.
    fn remove_delivered(&self, writer: &mut Writer, when: Removal) {
        let Some(oldest_cursor) = self
            .sink_configs
            .iter()
            .map(|sink| read_cursor(&self.dir, &sink.name).segment)
            .min()
        else {
            return;
        };
        let Ok(existing) = segments(&self.dir) else {
            return;
        };
        let mut later = Vec::new();
        for (first_seq, path) in existing {
            if first_seq >= oldest_cursor || path == writer.file_path {
                break;
            }
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            match (when, &self.archive) {
                // Archived by its own thread (compressing takes time), then removed.
                (Removal::Later, Some(archive)) => {
                    writer.spool_bytes = writer.spool_bytes.saturating_sub(size);
                    archive.send(path);
                }
                (Removal::Later, None) => {
                    writer.spool_bytes = writer.spool_bytes.saturating_sub(size);
                    later.push(path);
                }
                (Removal::Now, Some(archive)) => {
                    let waiting = archive
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&path);
                    if !waiting {
                        archive_one(&archive.archiver, &path, &archive.notices);
                    }
                    if !path.exists() {
                        writer.spool_bytes = writer.spool_bytes.saturating_sub(size);
                    }
                }
                (Removal::Now, None) => {
                    if remove_segment(&path) {
                        writer.spool_bytes = writer.spool_bytes.saturating_sub(size);
                    }
                }
            }
        }
        if !later.is_empty() {
            let mut files = self.syncer.files.lock().unwrap_or_else(|p| p.into_inner());
            for path in later {
                if !files.delivered.contains(&path) {
                    files.delivered.push(path);
                }
            }
            drop(files);
            // Rotations are rare: the fsync thread need not wait for more events to come.
            self.syncer.kick(true);
        }
        self.spool_bytes
            .store(writer.spool_bytes, Ordering::Relaxed);
        metrics()
            .audit_spool_bytes
            .set(i64::try_from(writer.spool_bytes).unwrap_or(i64::MAX));
    }
}

/// When delivered segments are removed.
#[derive(Clone, Copy)]
enum Removal {
    /// At once: the spool needs the room.
    Now,
    /// By the fsync thread.
    Later,
}

/// Whether the spool's folder takes a small file (a page of bytes, written and removed).
fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".writable-probe");
    // 0600 like every file of the spool: one left behind by a crash must not block the start.
    let result = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(&[0u8; 4096]));
    let _ = std::fs::remove_file(&path);
    result
}

/// Removes a delivered segment; `false` (and a warning) when it cannot be.
fn remove_segment(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(segment = %path.display(), "delivered audit segment removed");
            true
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
        Err(error) => {
            tracing::warn!(%error, segment = %path.display(), "cannot remove a delivered audit segment");
            false
        }
    }
}

/// Whether a segment is sealed (its first line a header).
fn is_sealed(path: &Path) -> std::io::Result<bool> {
    let mut start = [0u8; 32];
    let read = File::open(path)?.read(&mut start)?;
    Ok(crate::at_rest::is_header(&start[..read]))
}

/// Refuses a spool that others may read: the folder must be 0700 (or stricter), and every file
/// in it 0600 — as ssh refuses a private key others can read.
pub(crate) fn check_private(dir: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::PermissionsExt;
    let exposed = |path: &Path, fix: &'static str| -> Result<(), AuditError> {
        let mode = std::fs::symlink_metadata(path)
            .map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 == 0 {
            Ok(())
        } else {
            Err(AuditError::Exposed {
                path: path.to_path_buf(),
                mode,
                fix,
            })
        }
    };
    exposed(dir, "700")?;
    let entries = std::fs::read_dir(dir).map_err(|source| AuditError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            exposed(&path, "600")?;
        }
    }
    Ok(())
}

/// Writes a small file of the spool (created 0600): write and rename, never half of one.
pub(crate) fn write_private(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("new");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(text)?;
    drop(file);
    std::fs::rename(&temporary, path)
}

/// Opens a segment for appending (created with mode 0600).
fn open_segment(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

impl AuditLog {
    /// Appends the event and waits until it is on disk (`fsync`, shared with every event written
    /// meanwhile). An error means the event may not survive a crash: callers refuse what must
    /// not happen unrecorded.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<u64, AuditError> {
        let seq = self.record_before_forward(event)?;
        self.syncer.kick(true);
        let mut durable = self.durable.subscribe();
        match tokio::time::timeout(DURABLE_WAIT, durable.wait_for(|on_disk| *on_disk >= seq)).await
        {
            Ok(Ok(_)) => Ok(seq),
            _ => Err(AuditError::NotDurable {
                path: self.dir.clone(),
            }),
        }
    }
}

impl AuditLog {
    /// At shutdown: makes every event written durable, then gives the sinks up to `wait` to
    /// deliver the spool. What they have not delivered by then is sent after the next start.
    pub async fn flush(&self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        let last = self.last_seq();
        self.syncer.kick(true);
        let mut durable = self.durable.subscribe();
        if tokio::time::timeout_at(deadline, durable.wait_for(|on_disk| *on_disk >= last))
            .await
            .is_err()
        {
            tracing::error!(spool = %self.dir.display(), "the last audit events could not be made durable");
        }
        let end = {
            let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            crate::spool::Cursor {
                segment: writer.file_first_seq,
                offset: writer.file_bytes,
            }
        };
        loop {
            let behind: Vec<&str> = self
                .sink_configs
                .iter()
                .filter(|sink| read_cursor(&self.dir, &sink.name) < end)
                .map(|sink| sink.name.as_str())
                .collect();
            if behind.is_empty() {
                tracing::info!(last_seq = last, "audit spool flushed and delivered");
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(sinks = ?behind, "sinks have not delivered everything; the rest is sent after the next start");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.syncer.closed.store(true, Ordering::SeqCst);
        self.syncer.kick(true);
    }
}

impl Syncer {
    /// Wakes the fsync thread: at once when `urgent`, else within the group window.
    fn kick(&self, urgent: bool) {
        let mut kick = self.kicked.lock().unwrap_or_else(|p| p.into_inner());
        let wake = !kick.pending || (urgent && !kick.urgent);
        kick.pending = true;
        kick.urgent |= urgent;
        drop(kick);
        if wake {
            self.wake.notify_one();
        }
    }
}

/// The thread that makes written events durable: woken by writes, it lets more gather for up to
/// the group window (unless someone waits), syncs once for all of them and announces the highest
/// sequence number on disk.
fn spawn_syncer(syncer: Arc<Syncer>, durable: tokio::sync::watch::Sender<u64>, dir: PathBuf) {
    let spawned = std::thread::Builder::new().name("audit-fsync".to_owned()).spawn(move || {
        let mut failing = false;
        loop {
            {
                let kick = syncer.kicked.lock().unwrap_or_else(|p| p.into_inner());
                let (kick, _) = syncer
                    .wake
                    .wait_timeout_while(kick, Duration::from_secs(1), |k| !k.pending)
                    .unwrap_or_else(|p| p.into_inner());
                let (mut kick, _) = syncer
                    .wake
                    .wait_timeout_while(kick, GROUP_WINDOW, |k| !k.urgent)
                    .unwrap_or_else(|p| p.into_inner());
                *kick = Kick::default();
            }
            if syncer.closed.load(Ordering::SeqCst) {
                return;
            }
            let delivered = std::mem::take(
                &mut syncer
                    .files
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .delivered,
            );
            for path in &delivered {
                remove_segment(path);
            }
            let target = syncer.written.load(Ordering::SeqCst);
            if target <= *durable.borrow() {
                continue;
            }
            // Taken before the sync: every event up to it is on disk once the sync succeeds.
            let head = syncer.head.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let synced = sync_files(&syncer, &dir);
            match synced {
                Ok(()) => {
                    failing = false;
                    save_head(&dir, &head);
                    durable.send_if_modified(|on_disk| {
                        (*on_disk < target).then(|| *on_disk = target).is_some()
                    });
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::error!(%error, spool = %dir.display(), "audit events cannot be made durable");
                }
                Err(_) => {}
            }
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the audit fsync thread; sensitive requests will be refused");
    }
}

/// The file in the spool that names its last durable event (`{"last_seq": N, "head": HASH}`),
/// rewritten after every group commit: `audit verify` checks the segments' end against it, so
/// cutting events off the end is seen (the chain alone cannot show it).
pub(crate) const HEAD_FILE: &str = "head";

/// Writes the head file (write and rename: never half of one). Not synced: after a crash it
/// may name an earlier event than the segments hold, which is not a problem; never a later one.
fn save_head(dir: &Path, (seq, hash): &(u64, String)) {
    let path = dir.join(HEAD_FILE);
    let text = format!("{{\"last_seq\":{seq},\"head\":\"{hash}\"}}\n");
    if let Err(error) = write_private(&path, text.as_bytes())
        && let Some(held_back) = invoiceguard_telemetry::throttle("spool head file not written")
    {
        tracing::warn!(%error, file = %path.display(), held_back, "the spool's head file not written");
    }
}

/// Syncs the closed segments, the folder (after a rotation) and the open segment: every event
/// written before the call is then on disk. The files are taken out of the lock first, so a
/// rotation never waits for a sync; what fails is put back for the next attempt.
fn sync_files(syncer: &Syncer, dir: &Path) -> std::io::Result<()> {
    let (closed, dir_changed, open) = {
        let mut files = syncer.files.lock().unwrap_or_else(|p| p.into_inner());
        let open = files.open.try_clone()?;
        let dir_changed = std::mem::take(&mut files.dir_changed);
        (std::mem::take(&mut files.closed), dir_changed, open)
    };
    let result = closed.iter().try_for_each(File::sync_data).and_then(|()| {
        if dir_changed {
            File::open(dir)?.sync_all()?;
        }
        open.sync_data()
    });
    if result.is_err() {
        let mut files = syncer.files.lock().unwrap_or_else(|p| p.into_inner());
        let mut retry = closed;
        retry.append(&mut files.closed);
        files.closed = retry;
        files.dir_changed |= dir_changed;
    }
    result
}

/// What was done to a torn last line when the spool was opened.
struct Repair {
    segment: PathBuf,
    /// Where the torn line began.
    offset: u64,
    /// Its length.
    bytes: u64,
    /// It was a whole event without its newline: the newline was added.
    completed: bool,
    /// Where the cut bytes were kept.
    kept_in: Option<PathBuf>,
}

impl Repair {
    fn describe(&self) -> String {
        let segment = self.segment.display();
        match (&self.kept_in, self.completed) {
            (_, true) => format!(
                "the last event of `{segment}` (at byte {}) had no newline; it was added",
                self.offset
            ),
            (Some(kept), false) => format!(
                "a torn line of {} bytes was cut from `{segment}` at byte {} and kept in `{}`",
                self.bytes,
                self.offset,
                kept.display()
            ),
            (None, false) => format!(
                "a torn line of {} bytes was cut from `{segment}` at byte {} (it could not be kept)",
                self.bytes, self.offset
            ),
        }
    }
}

/// Repairs the open segment's end when its last line has no newline (the process died, or the
/// disk filled, in the middle of a write): a whole event that only lacks the newline gets it;
/// anything else is cut, after being copied to `torn-<segment>-<offset>.bin` beside it, so the
/// next event starts a line of its own and the chain stays verifiable.
fn repair_tail(dir: &Path, first_seq: u64, path: &Path) -> std::io::Result<Option<Repair>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Ok(None);
    }
    let length = metadata.len();
    let start = length.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    (&mut file).take(length - start).read_to_end(&mut tail)?;
    if tail.is_empty() || tail.ends_with(b"\n") {
        return Ok(None);
    }
    let torn_from = match memchr::memrchr(b'\n', &tail) {
        Some(at) => at + 1,
        None if start == 0 => 0,
        // One line longer than the window: not ours to judge; `audit verify` will name it.
        None => return Ok(None),
    };
    let torn = &tail[torn_from..];
    let offset = start + torn_from as u64;
    let whole = match LineDecoder::for_segment(path)?.line(torn) {
        Decoded::Event(plain) => serde_json::from_slice::<serde_json::Value>(&plain)
            .ok()
            .is_some_and(|event| event.get("seq").is_some() && event.get("prev_hash").is_some()),
        Decoded::Header | Decoded::Unreadable(_) => false,
    };
    if whole {
        file.seek(SeekFrom::End(0))?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        return Ok(Some(Repair {
            segment: path.to_path_buf(),
            offset,
            bytes: torn.len() as u64,
            completed: true,
            kept_in: None,
        }));
    }
    let kept = dir.join(format!("torn-{first_seq:020}-{offset}.bin"));
    let kept_in = match write_private(&kept, torn) {
        Ok(()) => Some(kept),
        Err(error) => {
            tracing::warn!(%error, file = %kept.display(), "the torn bytes could not be kept");
            None
        }
    };
    file.set_len(offset)?;
    file.sync_all()?;
    Ok(Some(Repair {
        segment: path.to_path_buf(),
        offset,
        bytes: torn.len() as u64,
        completed: false,
        kept_in,
    }))
}

/// The `seq` and the bytes of the spool's last complete event; 0 and none for an empty spool.
fn last_event(segments: &[(u64, PathBuf)]) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    for (_, path) in segments.iter().rev() {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.take(TAIL_BYTES).read_to_end(&mut tail)?;
        let mut decoder = LineDecoder::for_segment(path)?;
        // A sealed segment this process cannot open: numbering and chaining on from nothing
        // would break the trail, so the spool is not opened.
        if let Some(why) = decoder.unreadable() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("`{}`: {why}", path.display()),
            ));
        }
        for line in tail.split(|b| *b == b'\n').rev() {
            let Decoded::Event(plain) = decoder.line(line) else {
                continue;
            };
            if let Some(seq) = serde_json::from_slice::<serde_json::Value>(&plain)
                .ok()
                .and_then(|event| event.get("seq").and_then(serde_json::Value::as_u64))
            {
                return Ok((seq, Some(plain.into_owned())));
            }
        }
    }
    Ok((0, None))
}

#[cfg(test)]
mod tests;
