//! TLS material: the listener's certificate and key (reloaded on SIGHUP or when the files
//! change), and for an `https` upstream the roots it is checked against and the client
//! certificate presented to it. One crypto provider (aws-lc-rs), TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from `{}`: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The listener's TLS configuration, offering HTTP/2 and HTTP/1.1 by ALPN. With a client CA, a
/// client certificate is asked for and verified when sent, but not required.
pub(crate) fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, String> {
    let certs = certificates(cert_file)?;
    let key = private_key(key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in `{}`: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("client CA `{}`: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "certificate `{}` and key `{}` do not fit: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The TLS configuration for an `https` upstream: the given CA file, or the system's roots; and
/// the client certificate to present, when the upstream asks for one.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in `{}`: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_file, key_file)) => builder
            .with_client_auth_cert(certificates(cert_file)?, private_key(key_file)?)
            .map_err(|e| {
                format!(
                    "client certificate `{}` and key `{}` do not fit: {e}",
                    cert_file.display(),
                    key_file.display()
                )
            }),
    }
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from `{}`: {e}", path.display()))
}

/// The listener's certificate, kept current: a new acceptor is built on SIGHUP, or when the
/// certificate or key file changes (checked every 5 s); one that fails to build is logged and
/// the current one keeps serving. Connections already open keep the one they started with.
pub(crate) fn watch_listener_certificate(
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca: Option<PathBuf>,
    acceptor: tokio::sync::watch::Sender<tokio_rustls::TlsAcceptor>,
) {
    tokio::spawn(async move {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        let mut seen = (stamp(&cert_file), stamp(&key_file));
        loop {
            let signalled = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signalled => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {
                    let now = (stamp(&cert_file), stamp(&key_file));
                    if now == seen {
                        continue;
                    }
                }
            }
            if acceptor.is_closed() {
                return;
            }
            seen = (stamp(&cert_file), stamp(&key_file));
            match server_config(&cert_file, &key_file, client_ca.as_deref()) {
                Ok(config) => {
                    acceptor.send_replace(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
                    tracing::info!(cert = %cert_file.display(), "listener certificate reloaded");
                }
                Err(error) => {
                    tracing::error!(%error, "listener certificate not reloaded; the current one keeps serving");
                }
            }
        }
    });
}
