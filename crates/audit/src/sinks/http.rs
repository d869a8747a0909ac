//! The HTTP sink: batches of events POSTed as NDJSON (one event per line) to a collector such as
//! a Vector `http_server` source or a Splunk HTTP Event Collector, with an `Authorization` header
//! read from a secret file (re-read for every batch, so the secret can be rotated in place). A
//! batch is delivered when the collector answers 2xx.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

use crate::sinks::{Format, SinkConfig, encode, tls_client_config};

/// How long one batch may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A collector's URL and the client that posts to it.
pub(crate) struct HttpSink {
    url: Uri,
    auth_header_file: Option<PathBuf>,
    format: Format,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpSink {
    /// The sink of an `[[audit.sinks]]` entry with `http = "https://…"`.
    pub(crate) fn new(sink: &SinkConfig, url: &str) -> Result<Self, String> {
        let url: Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        let ca_file = sink.tls.as_ref().and_then(|t| t.ca_file.as_deref());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_client_config(ca_file)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            url,
            auth_header_file: sink.auth_header_file.clone(),
            format: sink.format,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Posts the events as one NDJSON body.
    pub(crate) async fn send(&mut self, lines: &[Bytes]) -> Result<(), String> {
        let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            encode(line, self.format, &mut body);
            body.push(b'\n');
        }
        let mut request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header(header::USER_AGENT, "invoiceguard-audit");
        if let Some(file) = &self.auth_header_file {
            let secret = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
            request = request.header(header::AUTHORIZATION, secret.trim());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "the collector did not answer in time".to_owned())?
            .map_err(|e| format!("cannot reach the collector: {e}"))?;
        let status = response.status();
        // Read the answer whole so the connection can be reused.
        let _ = tokio::time::timeout(TIMEOUT, response.into_body().collect()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}
