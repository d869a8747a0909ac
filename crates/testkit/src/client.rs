//! An HTTP client for tests: plain HTTP/1.1, HTTP/2 with prior knowledge, or TLS with ALPN.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Whole body.
    pub body: Bytes,
    /// Protocol version.
    pub version: http::Version,
}

impl Reply {
    /// The body as JSON (panics in tests when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            serde_json::json!({"unparsable": e.to_string(), "body": String::from_utf8_lossy(&self.body)})
        })
    }

    /// A header as text, or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn collect<B>(response: http::Response<B>) -> anyhow::Result<Reply>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

/// Sends a request over HTTP/1.1.
pub async fn send(request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    collect(client.request(request).await?).await
}

/// Sends a request over cleartext HTTP/2 (prior knowledge).
pub async fn send_h2(request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    collect(client.request(request).await?).await
}

/// GET `url` with an optional bearer token.
pub async fn get(url: &str, token: Option<&str>) -> anyhow::Result<Reply> {
    let mut request = Request::get(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(request.body(Full::default())?).await
}

/// A TLS client trusting one CA file, offering HTTP/2 and HTTP/1.1.
pub struct TlsClient(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>);

impl TlsClient {
    /// Trusts the PEM certificates in `ca_file`.
    pub fn new(ca_file: &Path) -> anyhow::Result<Self> {
        Self::build(ca_file, None)
    }

    /// Trusts `ca_file` and presents the client certificate `cert_file` with its key.
    pub fn with_client_certificate(
        ca_file: &Path,
        cert_file: &Path,
        key_file: &Path,
    ) -> anyhow::Result<Self> {
        Self::build(ca_file, Some((cert_file, key_file)))
    }

    fn build(ca_file: &Path, client: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file)? {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let config = match client {
            None => config.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let chain =
                    CertificateDer::pem_file_iter(cert_file)?.collect::<Result<Vec<_>, _>>()?;
                config.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key_file)?)?
            }
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_all_versions()
            .build();
        Ok(Self(Client::builder(TokioExecutor::new()).build(connector)))
    }

    /// Sends a request.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        collect(self.0.request(request).await?).await
    }
}
