//! The accept phase: the public listener (plain TCP or TLS), HTTP/1.1 and HTTP/2 connections, and
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::pipeline::{Connection, Gateway, StartError};
use crate::tls;

/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the sinks get, after the drain, to deliver what is in the spool.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A part of the gateway could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The listener's TLS material is unusable.
    #[error("listen.tls: {0}")]
    Tls(String),
    /// The admin listener cannot start.
    #[error("admin: {0}")]
    Admin(String),
    /// The address cannot be listened on.
    #[error("cannot listen on `{address}`: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the gateway until `shutdown` completes, then stops accepting and lets in-flight requests
/// finish (up to a limit).
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let acceptor = match &config.listen.tls {
        Some(files) => {
            let initial = TlsAcceptor::from(Arc::new(
                tls::server_config(
                    &files.cert_file,
                    &files.key_file,
                    config.listen.client_ca_file.as_deref(),
                )
                .map_err(ServeError::Tls)?,
            ));
            let (sender, receiver) = tokio::sync::watch::channel(initial);
            tls::watch_listener_certificate(
                files.cert_file.clone(),
                files.key_file.clone(),
                config.listen.client_ca_file.clone(),
                sender,
            );
            Some(receiver)
        }
        None => None,
    };
    let gateway = Arc::new(Gateway::start(&config).await?);
    gateway.audit().start_sinks();
    let address = config.listen.address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!(%address, scheme, "listening");
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(admin_address) = config.admin.address {
        let admin_listener =
            TcpListener::bind(admin_address)
                .await
                .map_err(|source| ServeError::Bind {
                    address: admin_address,
                    source,
                })?;
        let token = match &config.admin.token_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        ServeError::Admin(format!("cannot read `{}`: {e}", file.display()))
                    })?
                    .trim()
                    .to_owned(),
            )
            .filter(|token| !token.is_empty()),
            None => None,
        };
        tracing::info!(address = %admin_address, revocations = token.is_some(), "admin listening");
        tokio::spawn(crate::admin::serve(
            gateway.clone(),
            admin_listener,
            token,
            async {
                let _ = admin_stopped.await;
            },
        ));
    }

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.listen.header_timeout_ms))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let acceptor = acceptor.as_ref().map(|current| current.borrow().clone());
        let (gateway, builder) = (gateway.clone(), builder.clone());
        tokio::spawn(async move {
            let service = |connection: Arc<Connection>| {
                service_fn(move |request| {
                    let (gateway, connection) = (gateway.clone(), connection.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            gateway.handle(request, &connection).await,
                        )
                    }
                })
            };
            match acceptor {
                None => {
                    let info = Arc::new(Connection {
                        peer,
                        tls: false,
                        client_certificate: None,
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service(info));
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                }
                Some(acceptor) => {
                    let Some(tls) = handshake(&acceptor, stream, peer).await else {
                        return;
                    };
                    let client_certificate = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .cloned();
                    let info = Arc::new(Connection {
                        peer,
                        tls: true,
                        client_certificate,
                    });
                    let connection = builder.serve_connection(TokioIo::new(tls), service(info));
                    if let Err(error) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                }
            }
        });
    }

    tracing::info!("shutting down: draining connections");
    drop(listener);
    let _ = stop_admin.send(());
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(Duration::from_secs(config.listen.drain_timeout_s)) => {
            tracing::warn!("drain timed out; closing");
        }
    }
    // Every request has its event in the spool: on disk now, and delivered if the sinks can.
    gateway.audit().flush(DELIVERY_TIMEOUT).await;
    Ok(())
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}
