//! The syslog sink: RFC 5424 messages with octet-counting framing (RFC 6587) over TCP, or over
//! TLS (RFC 5425). Syslog has no acknowledgement: a batch counts as delivered once the
//! connection has stayed open for a while after it (see `ship`).

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::sinks::{Format, SinkConfig, encode, tls_client_config};

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

/// A syslog collector and the connection to it, opened when needed.
pub(crate) struct Syslog {
    address: String,
    app_name: String,
    hostname: String,
    format: Format,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connection: Option<Stream>,
}

impl Syslog {
    /// The sink of `[[audit.sinks]]` entry with `syslog = "host:port"`.
    pub(crate) fn new(sink: &SinkConfig, address: &str) -> Result<Self, String> {
        let tls = match &sink.tls {
            None => None,
            Some(tls) => {
                let name = tls
                    .server_name
                    .clone()
                    .unwrap_or_else(|| host_of(address).to_owned());
                let name = ServerName::try_from(name).map_err(|e| e.to_string())?;
                let config = tls_client_config(tls.ca_file.as_deref())?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Self {
            address: address.to_owned(),
            app_name: sink.app_name.clone(),
            hostname: hostname(),
            format: sink.format,
            tls,
            connection: None,
        })
    }

    /// Whether the connection that carried the last batches was closed since.
    pub(crate) async fn lost(&mut self) -> bool {
        let closed = match self.connection.as_mut() {
            Some(stream) => stream.closed().await,
            None => true,
        };
        if closed {
            self.connection = None;
        }
        closed
    }

    /// Writes the events to the collector, connecting first when needed.
    pub(crate) async fn send(&mut self, lines: &[Bytes]) -> Result<(), String> {
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend(frame(line, &self.app_name, &self.hostname, self.format));
        }
        if self.connection.is_none() {
            let stream = self.connect().await?;
            tracing::info!(address = %self.address, tls = self.tls.is_some(), "collector connected");
            self.connection = Some(stream);
        }
        let Some(stream) = self.connection.as_mut() else {
            return Err("not connected".to_owned());
        };
        match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.connection = None;
                Err(error.to_string())
            }
            Err(_) => {
                self.connection = None;
                Err("write timed out".to_owned())
            }
        }
    }

    /// Connects to the collector (and shakes hands, over TLS).
    async fn connect(&self) -> Result<Stream, String> {
        let tcp = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&self.address))
            .await
            .map_err(|_| "connection timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => {
                let stream = tokio::time::timeout(
                    Duration::from_secs(5),
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| "TLS handshake timed out".to_owned())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
                Ok(Stream::Tls(Box::new(stream)))
            }
        }
    }
}

/// The host part of `host:port`.
pub(crate) fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(host, _)| host)
}

/// This machine's name for the HOSTNAME field.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "invoiceguard".to_owned())
}

/// The syslog severity (RFC 5424 section 6.2.1) of an event's severity, so that the usual
/// "warning or worse" filter keeps every event the baseline wants seen: a break-glass request is
/// critical (2); a refused login, an administration request or an admin operation (`high`) and a
/// gateway or upstream failure (`error`) are errors (3); a refusal is a warning (4); an allowed
/// request is informational (6).
pub(crate) fn syslog_severity(severity: Option<&str>) -> u8 {
    match severity {
        Some("critical") => 2,
        Some("high" | "error") => 3,
        Some("warning") => 4,
        _ => 6,
    }
}

/// An RFC 3339 time as RFC 5424's TIMESTAMP (section 6.2.3): at most 6 fractional digits (the
/// event's nanoseconds are cut to microseconds).
fn rfc5424_time(time: &str) -> std::borrow::Cow<'_, str> {
    let Some(dot) = time.find('.') else {
        return time.into();
    };
    let digits = time[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits <= 6 {
        return time.into();
    }
    format!("{}{}", &time[..dot + 7], &time[dot + 1 + digits..]).into()
}

/// One event as an RFC 5424 message with octet-counting framing. Facility 13 (log audit); the
/// syslog severity follows the event's ([`syslog_severity`]); the message is the event in the
/// sink's format.
fn frame(line: &[u8], app_name: &str, hostname: &str, format: Format) -> Vec<u8> {
    /// What the syslog header needs of an event (the rest is skipped, not built).
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        time: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        severity: Option<std::borrow::Cow<'a, str>>,
    }
    let head = serde_json::from_slice::<Head<'_>>(line).ok();
    let severity = syslog_severity(head.as_ref().and_then(|h| h.severity.as_deref()));
    let time = head
        .as_ref()
        .and_then(|h| h.time.as_deref())
        .map_or("-".into(), rfc5424_time);
    let mut message = format!(
        "<{}>1 {time} {hostname} {app_name} {} audit - ",
        13 * 8 + u16::from(severity),
        std::process::id()
    )
    .into_bytes();
    encode(line, format, &mut message);
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(&message);
    framed
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
        // Nanoseconds are cut to the microseconds RFC 5424 allows; `high` is an error (3).
        let framed = frame(
            br#"{"time":"2026-11-21T10:00:00.123456789Z","severity":"high"}"#,
            "invoiceguard",
            "gw1",
            Format::Json,
        );
        let text = String::from_utf8(framed).unwrap();
        assert!(
            text.contains(" <107>1 2026-11-21T10:00:00.123456Z gw1 "),
            "{text}"
        );
        assert_eq!(
            rfc5424_time("2026-11-21T10:00:00.12Z"),
            "2026-11-21T10:00:00.12Z"
        );
        assert_eq!(
            rfc5424_time("2026-11-21T10:00:00.1234567+01:00"),
            "2026-11-21T10:00:00.123456+01:00"
        );
        let severities =
            ["info", "warning", "high", "error", "critical"].map(|s| syslog_severity(Some(s)));
        assert_eq!(severities, [6, 4, 3, 3, 2]);
    }
}
