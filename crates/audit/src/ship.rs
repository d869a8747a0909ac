//! Sinks: each follows the audit file with its own cursor and ships every event to a collector —
//! today syslog (RFC 5424 over TCP, octet-counting framing, RFC 6587). Delivery is at least once:
//! the cursor is saved one batch behind what was sent, a collector found closed before a batch
//! gets everything since the saved cursor again, and a restarted gateway resumes from it. Nothing
//! is lost; a few events may arrive twice around an outage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The most bytes of events read and sent at once.
const BATCH_BYTES: u64 = 256 * 1024;
/// How often the file is looked at for new events when there are none.
const IDLE: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One `[[audit.sinks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names the sink and its cursor file (`<audit file>.<name>.cursor`).
    pub name: String,
    /// A syslog collector, `host:port`: RFC 5424 over TCP with octet-counting framing.
    pub syslog: String,
    /// Syslog over TLS (RFC 5425) when set.
    pub tls: Option<SinkTls>,
    /// The APP-NAME of the syslog messages.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// `json` (the native event) or `ocsf` (OCSF API Activity and Authentication).
    #[serde(default)]
    pub format: Format,
}

/// How events are encoded for a sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The native JSON event, as in the audit file.
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
    /// The name the certificate must be valid for; the host of `syslog` when absent.
    pub server_name: Option<String>,
}

fn default_app_name() -> String {
    "invoiceguard".to_owned()
}

impl SinkConfig {
    /// Checks the entry, naming each problem with its key.
    pub fn validate(&self, index: usize) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(format!(
                "audit.sinks[{index}].name: `{}` must be letters, digits, `-` or `_`",
                self.name
            ));
        }
        if self
            .syslog
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            problems.push(format!(
                "audit.sinks[{index}].syslog: `{}` is not `host:port`",
                self.syslog
            ));
        }
        if let Some(ca) = self.tls.as_ref().and_then(|t| t.ca_file.as_ref())
            && !ca.is_file()
        {
            problems.push(format!(
                "audit.sinks[{index}].tls.ca_file: `{}` is not a readable file",
                ca.display()
            ));
        }
        if self.tls.is_some() && ServerName::try_from(self.server_name().to_owned()).is_err() {
            problems.push(format!(
                "audit.sinks[{index}].tls.server_name: `{}` is not a server name",
                self.server_name()
            ));
        }
        if self.app_name.is_empty()
            || self.app_name.len() > 48
            || !self.app_name.bytes().all(|b| b.is_ascii_graphic())
        {
            problems.push(format!(
                "audit.sinks[{index}].app_name: 1 to 48 printable characters"
            ));
        }
        problems
    }
}

impl SinkConfig {
    /// The name the collector's certificate must be valid for.
    fn server_name(&self) -> &str {
        self.tls
            .as_ref()
            .and_then(|t| t.server_name.as_deref())
            .unwrap_or_else(|| {
                self.syslog
                    .rsplit_once(':')
                    .map_or(self.syslog.as_str(), |(host, _)| host)
            })
    }

    /// The TLS client of this sink, when it uses TLS.
    fn connector(&self) -> Result<Option<(TlsConnector, ServerName<'static>)>, String> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_file {
            Some(file) => {
                for cert in CertificateDer::pem_file_iter(file)
                    .map_err(|e| format!("`{}`: {e}", file.display()))?
                {
                    roots
                        .add(cert.map_err(|e| format!("`{}`: {e}", file.display()))?)
                        .map_err(|e| format!("`{}`: {e}", file.display()))?;
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name =
            ServerName::try_from(self.server_name().to_owned()).map_err(|e| e.to_string())?;
        Ok(Some((TlsConnector::from(Arc::new(config)), name)))
    }
}

/// A connection to a collector, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(stream) => stream.write_all(bytes).await,
            Self::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }

    /// Whether the collector closed the connection (it never sends data to us), found without
    /// waiting: one poll of a read.
    async fn closed(&mut self) -> bool {
        let mut probe = [0u8; 256];
        let read = match self {
            Self::Plain(stream) => {
                tokio::time::timeout(Duration::ZERO, stream.read(&mut probe)).await
            }
            Self::Tls(stream) => {
                tokio::time::timeout(Duration::ZERO, stream.read(&mut probe)).await
            }
        };
        matches!(read, Ok(Ok(0) | Err(_)))
    }
}

/// Connects to the collector (and shakes hands, over TLS).
async fn connect(
    sink: &SinkConfig,
    tls: Option<&(TlsConnector, ServerName<'static>)>,
) -> Result<Stream, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&sink.syslog))
        .await
        .map_err(|_| "connection timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Stream::Plain(tcp)),
        Some((connector, name)) => {
            let stream =
                tokio::time::timeout(Duration::from_secs(5), connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_owned())?
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
            Ok(Stream::Tls(Box::new(stream)))
        }
    }
}

/// The cursor file of a sink.
pub fn cursor_path(audit_file: &Path, sink: &str) -> PathBuf {
    let mut name = audit_file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{sink}.cursor"));
    audit_file.with_file_name(name)
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn save_cursor(path: &Path, offset: u64) {
    let temporary = path.with_extension("cursor.new");
    let result = std::fs::write(&temporary, offset.to_string())
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = result {
        tracing::warn!(%error, cursor = %path.display(), "sink cursor not saved; events may be sent again");
    }
}

/// The complete lines of the file from `offset`, at most about [`BATCH_BYTES`], and the offset
/// after them.
fn read_batch(file: &Path, offset: u64) -> std::io::Result<(Vec<Vec<u8>>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut handle = std::fs::File::open(file)?;
    let length = handle.metadata()?.len();
    if length <= offset {
        return Ok((Vec::new(), offset));
    }
    handle.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    handle
        .take(BATCH_BYTES.min(length - offset))
        .read_to_end(&mut bytes)?;
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
        return Ok((Vec::new(), offset));
    };
    let lines = bytes[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok((lines, offset + end as u64 + 1))
}

/// One event as an RFC 5424 message with octet-counting framing. Facility 13 (log audit); the
/// syslog severity follows the event's; the message is the event in the sink's format.
fn frame(line: &[u8], app_name: &str, hostname: &str, format: Format) -> Vec<u8> {
    let event: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let body = match format {
        Format::Json => line.to_vec(),
        Format::Ocsf => {
            serde_json::to_vec(&crate::ocsf::to_ocsf(&event)).unwrap_or_else(|_| line.to_vec())
        }
    };
    let severity = match event.get("severity").and_then(Value::as_str) {
        Some("critical") => 2,
        Some("error") => 3,
        Some("warning") => 4,
        Some("high") => 5,
        _ => 6,
    };
    let time = event.get("time").and_then(Value::as_str).unwrap_or("-");
    let mut message = format!(
        "<{}>1 {time} {hostname} {app_name} {} audit - ",
        13 * 8 + severity,
        std::process::id()
    )
    .into_bytes();
    message.extend_from_slice(&body);
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(&message);
    framed
}

/// Ships the audit file to the sink, for as long as the process runs.
pub async fn ship(sink: SinkConfig, audit_file: PathBuf) {
    let cursor = cursor_path(&audit_file, &sink.name);
    let hostname = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "invoiceguard".to_owned());
    let tls = match sink.connector() {
        Ok(tls) => tls,
        Err(error) => {
            tracing::error!(%error, sink = %sink.name, "sink TLS is unusable; nothing is shipped to it");
            return;
        }
    };
    let mut committed = read_cursor(&cursor);
    let mut sent = committed;
    let mut connection: Option<Stream> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let (lines, next) = match read_batch(&audit_file, sent) {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, sink = %sink.name, "cannot read the audit file");
                tokio::time::sleep(MAX_BACKOFF).await;
                continue;
            }
        };
        // Before anything else: is the collector still there? Then what was sent before is
        // taken as delivered; if not, it is sent again.
        if let Some(stream) = connection.as_mut() {
            if stream.closed().await {
                tracing::warn!(sink = %sink.name, "collector closed the connection; resending from the last saved cursor");
                connection = None;
                sent = committed;
                continue;
            }
            if committed != sent {
                committed = sent;
                save_cursor(&cursor, committed);
            }
        }
        if lines.is_empty() {
            tokio::time::sleep(IDLE).await;
            continue;
        }
        let stream = match connection.as_mut() {
            Some(stream) => stream,
            None => match connect(&sink, tls.as_ref()).await {
                Ok(stream) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!(sink = %sink.name, address = %sink.syslog, tls = tls.is_some(), "collector connected");
                    connection.insert(stream)
                }
                Err(error) => {
                    tracing::debug!(%error, sink = %sink.name, "collector unreachable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let mut bytes = Vec::new();
        for line in &lines {
            bytes.extend(frame(line, &sink.app_name, &hostname, sink.format));
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&bytes)).await {
            Ok(Ok(())) => sent = next,
            _ => {
                tracing::warn!(sink = %sink.name, "sending to the collector failed; resending from the last saved cursor");
                connection = None;
                sent = committed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_rfc_5424_with_octet_counting() {
        let framed = frame(
            br#"{"time":"2026-11-21T10:00:00Z","severity":"warning","seq":1}"#,
            "invoiceguard",
            "gw1",
            Format::Json,
        );
        let text = String::from_utf8(framed).unwrap();
        let (length, message) = text.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), message.len());
        assert!(
            message.starts_with("<108>1 2026-11-21T10:00:00Z gw1 invoiceguard "),
            "{message}"
        );
        assert!(
            message.ends_with(
                r#" audit - {"time":"2026-11-21T10:00:00Z","severity":"warning","seq":1}"#
            )
        );
    }

    #[test]
    fn batches_hold_only_complete_lines() {
        let dir = std::env::temp_dir().join(format!("invoiceguard-ship-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("audit.jsonl");
        std::fs::write(&file, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let (lines, next) = read_batch(&file, 0).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(next, 16);
        assert!(
            read_batch(&file, next).unwrap().0.is_empty(),
            "a half-written line waits"
        );
        assert_eq!(
            cursor_path(&file, "siem"),
            dir.join("audit.jsonl.siem.cursor")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
