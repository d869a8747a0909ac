//! The example invoicing API, served on its own thread and runtime on a free port: plain HTTP,
//! or HTTPS requiring a client certificate (the ERP behind mTLS).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tokio::sync::oneshot;

/// A running example API, stopped when dropped.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    https: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// Starts the example API.
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Self::launch(listener, None)
    }

    /// Starts it over HTTPS with `cert` and `key` (for `localhost`), accepting only clients
    /// whose certificate chains to `client_ca`.
    pub fn start_mtls(cert: &Path, key: &Path, client_ca: &Path) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(client_ca)? {
            roots.add(ca?)?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()?;
        let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, PrivateKeyDer::from_pem_file(key)?)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Self::launch(listener, Some(Arc::new(config)))
    }

    /// Stops the API (an outage): its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Starts it again on the same address, with a fresh store (as after a crash).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error.into()),
            }
        };
        *self = Self::launch(listener, self.tls.clone())?;
        Ok(())
    }

    fn launch(
        listener: std::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<Self> {
        let https = tls.is_some();
        let kept = tls.clone();
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let serving = async move {
                    match tls {
                        Some(config) => invoicing_api::serve_tls(listener, config).await,
                        None => invoicing_api::serve(listener).await,
                    }
                };
                tokio::select! {
                    () = serving => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(Self {
            addr,
            https,
            tls: kept,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Its base URL (`https://localhost:PORT` over TLS).
    pub fn url(&self) -> String {
        if self.https {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The requests it received, oldest first (its `/__journal`), read directly (over TLS,
    /// `client` must trust its certificate and present one).
    pub async fn journal(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.journal_with(None).await
    }

    /// [`Upstream::journal`] through a given TLS client.
    pub async fn journal_with(
        &self,
        client: Option<&crate::client::TlsClient>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let url = format!("{}/__journal", self.url());
        let reply = match client {
            Some(client) => {
                client
                    .send(http::Request::get(url).body(http_body_util::Full::default())?)
                    .await?
            }
            None => crate::client::get(&url, None).await?,
        };
        Ok(reply.json().as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}
