//! The accept phase: the public listener (plain TCP or TLS), HTTP/1.1 and HTTP/2 connections,
//! the connection limits and the HTTP-level limits (header size and time, HTTP/2 streams and
//! resets), and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::context::Connection;
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::{Gateway, StartError};
use crate::head_guard::{HeadGuard, Verdict};
use crate::tls;

/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the sinks get, after the drain, to deliver what is in the spool.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) read, in bytes (then 431).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers in one HTTP/1.1 request (then 431).
const MAX_HEADERS: usize = 100;
/// HTTP/2: streams open at once on one connection.
const MAX_STREAMS: u32 = 128;
/// HTTP/2: the largest header list (then the stream is refused).
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// HTTP/2: streams a client may reset before the gateway accepted them, before the connection
/// is closed with `ENHANCE_YOUR_CALM` (the rapid-reset attack, CVE-2023-44487).
const MAX_PENDING_RESETS: usize = 20;
/// HTTP/2: streams the gateway may reset because of the client's protocol errors before it
/// closes the connection.
const MAX_ERROR_RESETS: usize = 64;

/// Open client connections, overall and per source address.
struct Admission {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; it leaves the count when dropped.
struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// Counts the connection in, or says which limit it is over.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, &'static str> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, per_ip) = &mut *open;
        if *total >= self.max_total {
            return Err("max_connections");
        }
        let from_ip = per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err("max_connections_per_ip");
        }
        *from_ip += 1;
        *total += 1;
        Ok(Admitted {
            admission: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, per_ip) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(from_ip) = per_ip.get_mut(&self.ip) {
            *from_ip = from_ip.saturating_sub(1);
            if *from_ip == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// What a connection that ended with an error says about the client: a request the HTTP layer
/// refused before the gateway saw it (audited, with the status the client got), or a client that
/// was too slow to send its headers (counted).
fn connection_ended(
    gateway: &Gateway,
    peer: SocketAddr,
    error: &(dyn std::error::Error + 'static),
    verdict: &Verdict,
) {
    let Some(error) = error.downcast_ref::<hyper::Error>() else {
        tracing::debug!(%peer, %error, "connection ended with an error");
        return;
    };
    let refused = |reason: &str| {
        invoiceguard_telemetry::metrics()
            .connections_refused
            .with_label_values(&[reason])
            .inc();
    };
    if error.is_parse() || error.is_parse_too_large() {
        refused("malformed");
        let status = if error.is_parse_too_large() { 431 } else { 400 };
        // The head guard's reason, when it is what made hyper refuse the head.
        let detail = match verdict.get() {
            Some(why) => (*why).to_owned(),
            None => error.to_string(),
        };
        gateway.record_malformed(peer, status, &detail);
    } else if error.is_timeout() {
        refused("header_timeout");
        tracing::debug!(%peer, "request head not received in time");
    } else {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

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
    let acceptor = tls_acceptor(&config)?;
    let gateway = Arc::new(Gateway::start(&config).await?);
    start_background(&gateway, &config);
    let address = config.listen.address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    invoiceguard_telemetry::metrics()
        .worker_threads
        .set(i64::try_from(workers).unwrap_or(i64::MAX));
    tracing::info!(%address, scheme, workers, "listening");
    let stop_admin = serve_admin(&gateway, &config).await?;
    let builder = Arc::new(connection_builder(&config));
    let admission = Arc::new(Admission {
        max_total: config.listen.max_connections,
        max_per_ip: config.listen.max_connections_per_ip,
        open: Mutex::new((0, HashMap::new())),
    });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if let Some(held_back) = invoiceguard_telemetry::throttle("accept failed") {
                        tracing::warn!(%error, held_back, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(limit) => {
                invoiceguard_telemetry::metrics()
                    .connections_refused
                    .with_label_values(&[limit])
                    .inc();
                tracing::debug!(%peer, limit, "connection refused");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let accepted = Accepted {
            gateway: gateway.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            acceptor: acceptor.as_ref().map(|current| current.borrow().clone()),
        };
        tokio::spawn(async move {
            let _admitted = admitted;
            accepted.serve(stream, peer).await;
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

/// The listener's TLS acceptor, replaced when its certificate files change; none for plain HTTP.
fn tls_acceptor(
    config: &Config,
) -> Result<Option<tokio::sync::watch::Receiver<TlsAcceptor>>, ServeError> {
    let Some(files) = &config.listen.tls else {
        return Ok(None);
    };
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
    Ok(Some(receiver))
}

/// The gateway's background work: audit delivery, the credentials watch, and the spool's
/// recovery — a spool that failed (a full disk) recovers as soon as it can, even when no
/// request comes to try, and the events kept in memory are written then.
fn start_background(gateway: &Arc<Gateway>, config: &Config) {
    gateway.audit.start_sinks();
    crate::ssf::spawn(gateway);
    if let Some(file) = &config.source {
        crate::credentials::spawn_watch(gateway, file.clone());
    }
    let weak = Arc::downgrade(gateway);
    tokio::spawn(async move {
        while let Some(gateway) = weak.upgrade() {
            gateway.audit().recover();
            drop(gateway);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Starts the admin listener when one is configured; the returned sender stops it.
async fn serve_admin(
    gateway: &Arc<Gateway>,
    config: &Config,
) -> Result<tokio::sync::oneshot::Sender<()>, ServeError> {
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(admin_address) = config.admin.address {
        let admin_listener =
            TcpListener::bind(admin_address)
                .await
                .map_err(|source| ServeError::Bind {
                    address: admin_address,
                    source,
                })?;
        tracing::info!(address = %admin_address, revocations = gateway.admin_token().current().is_some(), "admin listening");
        tokio::spawn(crate::admin::serve(
            gateway.clone(),
            admin_listener,
            async {
                let _ = admin_stopped.await;
            },
        ));
    }
    Ok(stop_admin)
}

/// HTTP/1.1 and HTTP/2 connection settings: head size and time limits, stream limits.
fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.listen.header_timeout_ms))
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_ERROR_RESETS);
    builder
}

/// What serving one accepted connection needs.
struct Accepted {
    gateway: Arc<Gateway>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    acceptor: Option<TlsAcceptor>,
}

impl Accepted {
    /// Serves the connection to its end (TLS first when the listener has it): its requests, each
    /// in a task of its own.
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let gateway = self.gateway.clone();
        match &self.acceptor {
            None => {
                let info = Arc::new(Connection {
                    peer,
                    tls: false,
                    client_certificate: None,
                });
                let verdict = Verdict::default();
                let stream = HeadGuard::new(stream, verdict.clone());
                let service = Requests {
                    gateway: gateway.clone(),
                    connection: info,
                };
                let connection = self.builder.serve_connection(TokioIo::new(stream), service);
                if let Err(error) = self.watcher.watch(connection).await {
                    connection_ended(&gateway, peer, &*error, &verdict);
                }
            }
            Some(acceptor) => {
                let Some(tls) = handshake(acceptor, stream, peer).await else {
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
                let verdict = Verdict::default();
                let stream = HeadGuard::new(tls, verdict.clone());
                let service = Requests {
                    gateway: gateway.clone(),
                    connection: info,
                };
                let connection = self.builder.serve_connection(TokioIo::new(stream), service);
                if let Err(error) = self.watcher.watch(connection.into_owned()).await {
                    connection_ended(&gateway, peer, &*error, &verdict);
                }
            }
        }
    }
}

/// The service of one connection. Each request runs in its own task, to its end: a client that
/// resets its stream or closes its connection does not cut a request (and its audit event)
/// short.
#[derive(Clone)]
struct Requests {
    gateway: Arc<Gateway>,
    connection: Arc<Connection>,
}

/// A request's answer as its task ends.
type Answered = futures_util::future::Map<
    tokio::task::JoinHandle<Response<ResponseBody>>,
    fn(
        Result<Response<ResponseBody>, tokio::task::JoinError>,
    ) -> Result<Response<ResponseBody>, Infallible>,
>;

impl hyper::service::Service<Request<Incoming>> for Requests {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Answered;

    fn call(&self, request: Request<Incoming>) -> Answered {
        let (gateway, connection) = (self.gateway.clone(), self.connection.clone());
        // Boxed: the request's future is large, and a task moves its future several times
        // while it is spawned; a box is moved as a pointer.
        let handled = tokio::spawn(Box::pin(async move {
            gateway.handle(request, &connection).await
        }));
        handled.map(|joined| {
            Ok(joined.unwrap_or_else(|error| {
                GatewayError::Internal(error.to_string()).to_response("unknown", &[])
            }))
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_admitted_up_to_both_limits_and_released_when_dropped() {
        let admission = Arc::new(Admission {
            max_total: 3,
            max_per_ip: 2,
            open: Mutex::new((0, HashMap::new())),
        });
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some("max_connections_per_ip"));
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some("max_connections"));
        drop(first);
        assert!(
            admission.admit(a).is_ok(),
            "a closed connection leaves the count"
        );
        let open = admission.open.lock().unwrap();
        assert_eq!(open.0, 2, "the admission just tested was dropped too");
    }
}
