//! Shipping: each sink follows the spool with its own cursor and delivers every event — to a
//! syslog collector, an HTTP collector or a file. Delivery is at least once: the cursor is saved
//! only once a batch is known delivered (an HTTP 2xx, a file `fsync`, a syslog connection still
//! open a while after the batch); after a failure or a restart, everything since the saved
//! cursor is sent again. Nothing is lost; a few events may arrive twice around an outage.
//!
//! This module holds the sinks' configuration, the shared encoding and the shipping loop; each
//! destination is a file of its own: `syslog.rs`, `http.rs`, `file.rs`.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use invoiceguard_telemetry::metrics;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde_json::Value;

mod file;
mod http;
mod syslog;

use crate::spool::{Cursor, read_batch, read_cursor, save_cursor};
use file::FileSink;
pub(crate) use file::{prepare, problem};
use http::HttpSink;
use syslog::{Syslog, host_of};

/// The most bytes of events read and sent at once: each batch costs a cursor save (a write and
/// a rename) and, for a file, a sync, so under load fewer, larger batches cost less per event.
const BATCH_BYTES: u64 = 1024 * 1024;
/// An HTTP sink's batch, one request body: under collectors' request limits (Splunk HEC takes
/// 1,000,000 bytes by default).
const HTTP_BATCH_BYTES: u64 = 256 * 1024;
/// How often the spool is looked at for new events when there are none.
const IDLE: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The wait after a first failed delivery.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// How long a syslog connection must stay open after a batch for it to count as delivered.
const SYSLOG_SETTLE: Duration = Duration::from_millis(250);
/// After a batch less than half full, how long more events may gather before the next
/// read: under load, one read, send and cursor save then carry many events instead of a few.
const LINGER: Duration = Duration::from_millis(20);

/// One `[[audit.sinks]]` entry: a name, a format and one destination (`syslog`, `http` or
/// `file`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names the sink, its cursor file (`<spool>/<name>.cursor`) and its metrics.
    pub name: String,
    /// `json` (the native event) or `ocsf` (OCSF API Activity and Authentication).
    #[serde(default)]
    pub format: Format,
    /// A syslog collector, `host:port`: RFC 5424 over TCP with octet-counting framing; over
    /// TLS (RFC 5425) when `tls` is set.
    pub syslog: Option<String>,
    /// The APP-NAME of the syslog messages.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// An HTTP collector's URL: batches POSTed as NDJSON.
    pub http: Option<String>,
    /// A file holding the whole `Authorization` header value for `http`, e.g. `Splunk <token>`.
    pub auth_header_file: Option<PathBuf>,
    /// A file events are appended to, one per line, rotated at `max_file_bytes`.
    pub file: Option<PathBuf>,
    /// The size at which `file` is rotated.
    #[serde(default = "default_file_bytes")]
    pub max_file_bytes: u64,
    /// How many rotated files are kept (`file.1` … `file.N`).
    #[serde(default = "default_keep")]
    pub keep_files: u32,
    /// TLS to the collector: syslog uses TLS when this is set; `https` URLs always do, with the
    /// system's roots unless `ca_file` is given.
    pub tls: Option<SinkTls>,
}

/// How events are encoded for a sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The native JSON event, as in the spool.
    #[default]
    Json,
    /// OCSF.
    Ocsf,
}

/// TLS to a collector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkTls {
    /// CA certificates (PEM) the collector's certificate must chain to; the system's roots when
    /// absent.
    pub ca_file: Option<PathBuf>,
    /// The name the certificate must be valid for (syslog); the host of `syslog` when absent.
    pub server_name: Option<String>,
}

fn default_app_name() -> String {
    "invoiceguard".to_owned()
}

fn default_file_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_keep() -> u32 {
    5
}

impl SinkConfig {
    /// Checks the entry, naming each problem with its key.
    pub fn validate(&self, index: usize) -> Vec<String> {
        let at = format!("audit.sinks[{index}]");
        let mut problems = Vec::new();
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(format!(
                "{at}.name: `{}` must be 1 to 64 letters, digits, `-` or `_`",
                self.name
            ));
        }
        let destinations = [
            self.syslog.is_some(),
            self.http.is_some(),
            self.file.is_some(),
        ];
        if destinations.iter().filter(|d| **d).count() != 1 {
            problems.push(format!(
                "{at}: exactly one of `syslog`, `http` or `file` must be set"
            ));
        }
        if let Some(address) = &self.syslog
            && address
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            problems.push(format!("{at}.syslog: `{address}` is not `host:port`"));
        }
        if let Some(url) = &self.http {
            match url.parse::<::http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some() => {}
                _ => problems.push(format!("{at}.http: `{url}` is not an http(s) URL")),
            }
        }
        if let Some(file) = &self.auth_header_file {
            match std::fs::read_to_string(file) {
                Err(error) => problems.push(format!(
                    "{at}.auth_header_file: cannot read `{}`: {error}",
                    file.display()
                )),
                Ok(text) if text.trim().is_empty() => problems.push(format!(
                    "{at}.auth_header_file: `{}` is empty; it must hold the header value",
                    file.display()
                )),
                Ok(_) => {}
            }
        }
        if self.auth_header_file.is_some() && self.http.is_none() {
            problems.push(format!("{at}.auth_header_file: only for an `http` sink"));
        }
        if self.file.is_some() && self.max_file_bytes < 4096 {
            problems.push(format!("{at}.max_file_bytes: at least 4096"));
        }
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_file
                && let Err(error) = std::fs::read(ca)
            {
                problems.push(format!(
                    "{at}.tls.ca_file: cannot read `{}`: {error}",
                    ca.display()
                ));
            }
            if let Some(address) = &self.syslog {
                let name = tls
                    .server_name
                    .clone()
                    .unwrap_or_else(|| host_of(address).to_owned());
                if ServerName::try_from(name.clone()).is_err() {
                    problems.push(format!(
                        "{at}.tls.server_name: `{name}` is not a server name"
                    ));
                }
            }
            if self.file.is_some() {
                problems.push(format!("{at}.tls: not for a `file` sink"));
            }
        }
        if self.app_name.is_empty()
            || self.app_name.len() > 48
            || !self.app_name.bytes().all(|b| b.is_ascii_graphic())
        {
            problems.push(format!("{at}.app_name: 1 to 48 printable characters"));
        }
        problems
    }
}

/// A TLS client trusting `ca_file`, or the system's roots.
pub(crate) fn tls_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(file) => {
            let unreadable = |e: &dyn std::fmt::Display| format!("`{}`: {e}", file.display());
            for cert in CertificateDer::pem_file_iter(file).map_err(|e| unreadable(&e))? {
                roots
                    .add(cert.map_err(|e| unreadable(&e))?)
                    .map_err(|e| unreadable(&e))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Appends one spool line, in a sink's format, to `out` (the line as it is for `json`).
pub(crate) fn encode(line: &[u8], format: Format, out: &mut Vec<u8>) {
    match format {
        Format::Json => out.extend_from_slice(line),
        Format::Ocsf => {
            let event: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
            match serde_json::to_vec(&crate::ocsf::to_ocsf(&event)) {
                Ok(ocsf) => out.extend(ocsf),
                Err(_) => out.extend_from_slice(line),
            }
        }
    }
}

/// Where a sink delivers.
enum Destination {
    Syslog(Syslog),
    Http(Box<HttpSink>),
    /// Written and synced on tokio's blocking pool: an `fsync` never holds up a worker thread
    /// (and the requests queued on it).
    File(Arc<std::sync::Mutex<FileSink>>),
}

impl Destination {
    fn new(sink: &SinkConfig) -> Result<Self, String> {
        match (&sink.syslog, &sink.http, &sink.file) {
            (Some(address), _, _) => Syslog::new(sink, address).map(Self::Syslog),
            (_, Some(url), _) => HttpSink::new(sink, url).map(|http| Self::Http(Box::new(http))),
            (_, _, Some(path)) => Ok(Self::File(Arc::new(std::sync::Mutex::new(FileSink::new(
                sink, path,
            ))))),
            _ => Err("no destination".to_owned()),
        }
    }

    /// The most bytes of events it is sent at once.
    fn batch_bytes(&self) -> u64 {
        match self {
            Self::Http(_) => HTTP_BATCH_BYTES,
            Self::Syslog(_) | Self::File(_) => BATCH_BYTES,
        }
    }

    /// Sends a batch; `Ok(true)` when it is known delivered, `Ok(false)` when that is known only
    /// later (syslog).
    async fn send(&mut self, lines: &[Bytes]) -> Result<bool, String> {
        match self {
            Self::Syslog(syslog) => syslog.send(lines).await.map(|()| false),
            Self::Http(http) => http.send(lines).await.map(|()| true),
            Self::File(file) => {
                let (file, lines) = (file.clone(), lines.to_vec());
                tokio::task::spawn_blocking(move || {
                    file.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .send(&lines)
                })
                .await
                .map_err(|e| format!("the file sink's writer stopped: {e}"))?
                .map(|()| true)
            }
        }
    }

    /// Whether batches sent but not yet known delivered were lost (syslog: the connection
    /// closed).
    async fn lost(&mut self) -> bool {
        match self {
            Self::Syslog(syslog) => syslog.lost().await,
            Self::Http(_) | Self::File(_) => false,
        }
    }
}

/// Delivers every event of a spool folder (a restored one) to a sink once more, oldest first,
/// with the events' own ids, so a SIEM that lost them can take them back and deduplicate: at
/// least once — a batch that fails is sent again, up to 10 times with growing waits. Returns
/// how many events were delivered. The folder's sinks' cursors are neither read nor written.
pub async fn ship_folder(sink: &SinkConfig, dir: &Path) -> Result<u64, String> {
    let mut destination = Destination::new(sink)?;
    let mut cursor = Cursor::default();
    let mut buffer = BytesMut::new();
    let mut shipped = 0;
    let mut unconfirmed = false;
    loop {
        let (lines, next) = read_batch(dir, cursor, destination.batch_bytes(), &mut buffer)
            .map_err(|error| format!("cannot read `{}`: {error}", dir.display()))?;
        if lines.is_empty() {
            if next == cursor {
                break;
            }
            cursor = next;
            continue;
        }
        let mut delays = retry_delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match destination.send(&lines).await {
                Ok(confirmed) => {
                    unconfirmed |= !confirmed;
                    break;
                }
                Err(error) if attempts >= 10 => {
                    return Err(format!(
                        "sink `{}` refused the events after {shipped} were delivered: {error}",
                        sink.name
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, sink = %sink.name, "delivery failed; retrying");
                    tokio::time::sleep(delays.next().unwrap_or(MAX_BACKOFF)).await;
                }
            }
        }
        shipped += lines.len() as u64;
        cursor = next;
    }
    if unconfirmed {
        // Syslog confirms nothing: a collector that closed the connection lost what was sent.
        tokio::time::sleep(SYSLOG_SETTLE).await;
        if destination.lost().await {
            return Err(format!(
                "sink `{}` closed the connection: the events may not all have arrived; ship again",
                sink.name
            ));
        }
    }
    Ok(shipped)
}

/// Saves a sink's cursor on tokio's blocking pool (a file write and a rename, which can wait
/// for the file system's journal).
async fn persist_cursor(spool: &Path, sink: &str, cursor: Cursor) {
    let (spool, sink) = (spool.to_path_buf(), sink.to_owned());
    if let Err(error) =
        tokio::task::spawn_blocking(move || save_cursor(&spool, &sink, cursor)).await
    {
        tracing::warn!(%error, "the cursor writer stopped");
    }
}

/// Reads the next batch on tokio's blocking pool: up to a megabyte read and split into lines,
/// which on a worker thread would hold up the requests queued behind it.
async fn read_batch_off_thread(
    spool: &Path,
    cursor: Cursor,
    max_bytes: u64,
    buffer: &mut BytesMut,
) -> std::io::Result<(Vec<Bytes>, Cursor)> {
    let (spool, mut owned) = (spool.to_path_buf(), std::mem::take(buffer));
    let (result, owned) = tokio::task::spawn_blocking(move || {
        let result = read_batch(&spool, cursor, max_bytes, &mut owned);
        (result, owned)
    })
    .await
    .map_err(std::io::Error::other)?;
    *buffer = owned;
    result
}

/// The `seq` of a spool line (the other fields are skipped, not built).
fn seq_of(line: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_slice::<Seq>(line).ok().map(|s| s.seq)
}

/// The waits between failed deliveries: 100 ms doubling up to 5 s, each with random jitter (up
/// to its own length), so replicas that lost the same collector do not all retry at once.
fn retry_delays() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY)
        .with_max_delay(MAX_BACKOFF)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Watches one sink's delivery: an event still undelivered `alert` after it was written makes
/// the sink lagging, recorded in the trail as `audit:sink_lagging`; once everything written up
/// to then is delivered, `audit:sink_recovered` says for how long. Both reach every other sink
/// at once, and the lagging one when it catches up.
pub(crate) struct LagWatch {
    sink: String,
    alert: Duration,
    log: std::sync::Weak<crate::AuditLog>,
    /// The highest seq written when an undelivered event was first seen, and when.
    oldest: Option<(u64, Instant)>,
    /// While lagging: since when, and the seq whose delivery ends it.
    lagging: Option<(Instant, u64)>,
}

impl LagWatch {
    pub(crate) fn new(sink: &str, alert: Duration, log: std::sync::Weak<crate::AuditLog>) -> Self {
        Self {
            sink: sink.to_owned(),
            alert,
            log,
            oldest: None,
            lagging: None,
        }
    }

    /// Looks at `written` and `delivered` (the highest seqs), recording a change of state.
    pub(crate) fn check(&mut self, written: u64, delivered: u64) {
        if self.alert.is_zero() {
            return;
        }
        if self.oldest.is_some_and(|(seq, _)| delivered >= seq) {
            self.oldest = None;
        }
        if self.oldest.is_none() && written > delivered {
            self.oldest = Some((written, Instant::now()));
        }
        match (self.lagging, self.oldest) {
            (Some((since, until)), _) if delivered >= until => {
                self.lagging = None;
                let detail = format!(
                    "the sink `{}` caught up after lagging for {} s",
                    self.sink,
                    since.elapsed().as_secs()
                );
                self.record("audit:sink_recovered", "warning", detail);
            }
            (None, Some((_, seen))) if seen.elapsed() >= self.alert => {
                let detail = format!(
                    "the sink `{}` has not delivered events written {} s ago: {} event(s) behind",
                    self.sink,
                    seen.elapsed().as_secs(),
                    written.saturating_sub(delivered)
                );
                let seq = self.record("audit:sink_lagging", "high", detail);
                self.lagging = Some((Instant::now(), seq.unwrap_or(written)));
            }
            _ => {}
        }
    }

    /// Records a system event in the trail; its seq.
    fn record(&self, action: &str, severity: &'static str, detail: String) -> Option<u64> {
        tracing::warn!(sink = %self.sink, %detail, "{action}");
        let log = self.log.upgrade()?;
        match log.record(crate::AuditEvent::system(action, severity, detail)) {
            Ok(seq) => Some(seq),
            Err(error) => {
                tracing::error!(%error, sink = %self.sink, "{action} could not be recorded");
                None
            }
        }
    }
}

/// Ships the spool to the sink, for as long as the process runs. `written` is the highest
/// sequence number written (for the lag metric and `watch`).
pub(crate) async fn ship(
    sink: SinkConfig,
    spool: PathBuf,
    written: Arc<AtomicU64>,
    mut watch: LagWatch,
) {
    let mut destination = match Destination::new(&sink) {
        Ok(destination) => destination,
        Err(error) => {
            tracing::error!(%error, sink = %sink.name, "sink is unusable; nothing is shipped to it");
            return;
        }
    };
    let m = metrics();
    let shipped = m.audit_events_shipped.with_label_values(&[&sink.name]);
    let retries = m.audit_sink_retries.with_label_values(&[&sink.name]);
    // `committed` is saved; `sent` is what went out after it; `pending` are syslog batches
    // (their end cursor, last seq, when) not yet known delivered.
    let mut committed = read_cursor(&spool, &sink.name);
    let mut committed_seq = crate::spool::seq_before(&spool, committed);
    // The lag is computed when scraped: written now minus delivered now.
    let delivered = Arc::new(AtomicU64::new(committed_seq));
    {
        let (lag, delivered, written) = (
            m.audit_sink_lag.with_label_values(&[&sink.name]),
            delivered.clone(),
            written.clone(),
        );
        m.on_scrape(move || {
            let behind = written
                .load(Ordering::SeqCst)
                .saturating_sub(delivered.load(Ordering::SeqCst));
            lag.set(i64::try_from(behind).unwrap_or(i64::MAX));
        });
    }
    let mut sent = committed;
    let mut pending: VecDeque<(Cursor, u64, usize, Instant)> = VecDeque::new();
    let mut delays = retry_delays();
    let mut buffer = BytesMut::new();
    let batch_bytes = destination.batch_bytes();
    loop {
        watch.check(written.load(Ordering::SeqCst), committed_seq);
        if !pending.is_empty() {
            if destination.lost().await {
                tracing::warn!(sink = %sink.name, "collector closed the connection; resending from the last saved cursor");
                retries.inc();
                pending.clear();
                sent = committed;
                continue;
            }
            while let Some((cursor, seq, count, _)) = pending
                .front()
                .filter(|p| p.3.elapsed() >= SYSLOG_SETTLE)
                .copied()
            {
                pending.pop_front();
                committed = cursor;
                committed_seq = seq;
                delivered.store(committed_seq, Ordering::SeqCst);
                shipped.inc_by(count as u64);
                persist_cursor(&spool, &sink.name, committed).await;
            }
        }
        let written_before = written.load(Ordering::SeqCst);
        let (lines, next) =
            match read_batch_off_thread(&spool, sent, batch_bytes, &mut buffer).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, sink = %sink.name, "cannot read the audit spool");
                    tokio::time::sleep(MAX_BACKOFF).await;
                    continue;
                }
            };
        if lines.is_empty() {
            // Moved on to a later segment without events to send: save that at once when
            // nothing is pending, so the closed segment can be removed.
            if next != sent && pending.is_empty() && sent == committed {
                committed = next;
                persist_cursor(&spool, &sink.name, committed).await;
            }
            sent = next;
            if pending.is_empty() {
                // Everything written before the read is delivered.
                committed_seq = committed_seq.max(written_before);
            }
            delivered.store(committed_seq, Ordering::SeqCst);
            tokio::time::sleep(if pending.is_empty() {
                IDLE
            } else {
                SYSLOG_SETTLE
            })
            .await;
            continue;
        }
        let last_seq = lines
            .last()
            .and_then(|l| seq_of(l))
            .unwrap_or(committed_seq);
        let full = lines.iter().map(Bytes::len).sum::<usize>() as u64 >= batch_bytes / 2;
        match destination.send(&lines).await {
            Ok(true) => {
                delays = retry_delays();
                sent = next;
                committed = next;
                committed_seq = last_seq;
                shipped.inc_by(lines.len() as u64);
                persist_cursor(&spool, &sink.name, committed).await;
            }
            Ok(false) => {
                delays = retry_delays();
                sent = next;
                pending.push_back((next, last_seq, lines.len(), Instant::now()));
            }
            Err(error) => {
                tracing::warn!(%error, sink = %sink.name, "delivery failed; retrying from the last saved cursor");
                retries.inc();
                pending.clear();
                sent = committed;
                tokio::time::sleep(delays.next().unwrap_or(MAX_BACKOFF)).await;
            }
        }
        delivered.store(committed_seq, Ordering::SeqCst);
        if !full {
            tokio::time::sleep(LINGER).await;
        }
    }
}
