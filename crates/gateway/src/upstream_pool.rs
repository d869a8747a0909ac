//! The upstream's connection pool: HTTP/1.1 connections kept open between requests, each carrying
//! one request at a time, the most recently used first. A pooled connection that the upstream
//! closed meanwhile gives its request back unsent, and the request goes on the next one (or on a
//! new connection) — never twice on the wire. A connection idle longer than the idle timeout is
//! not used again; it is closed when the pool is next used (there is no timer: an idle gateway
//! leaves it to the upstream's keep-alive timeout, as hyper-util's pool did without one).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::error::RequestBody;

/// The most idle connections kept; more are closed as their requests end.
const MAX_IDLE: usize = 1024;

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made (the text names the cause and its causes).
    Connect(String),
    /// The connection failed while the request was sent or its response awaited.
    Http(hyper::Error),
}

/// A connection's task: it runs until the connection ends.
type Connecting = Pin<Box<dyn std::future::Future<Output = Result<(), hyper::Error>> + Send>>;

/// How the pool reaches the upstream.
pub(crate) enum Dialer {
    /// Over the network: TCP, and TLS when the upstream's URL says `https`.
    Network(HttpsConnector<HttpConnector>),
    /// An upstream in this process, over in-memory pipes: each new connection's far end is
    /// handed to the function, which serves it (the socket-free pipeline tests).
    #[cfg(test)]
    InMemory(Arc<dyn Fn(tokio::io::DuplexStream) + Send + Sync>),
}

/// Idle connections to one upstream.
pub(crate) struct Pool {
    dialer: Dialer,
    /// The upstream's scheme and authority: where new connections go.
    target: Uri,
    idle_timeout: Duration,
    /// Ready connections and since when they are idle, the most recent last.
    idle: Mutex<Vec<(SendRequest<RequestBody>, Instant)>>,
}

impl Pool {
    pub(crate) fn new(dialer: Dialer, target: Uri, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            dialer,
            target,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request` (origin-form URI, `Host` set) and returns the response head; the
    /// connection goes back to the pool once the response body has been read to its end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut request: Request<RequestBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        while let Some(mut sender) = self.checkout() {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.returning(response, sender)),
                Err(mut error) => match error.take_message() {
                    // Not sent: the connection was closed while idle.
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Http(error.into_error())),
                },
            }
        }
        // Boxed: connecting (TCP, TLS) is the rare path, and its future would otherwise make
        // every request's future larger.
        let mut sender = Box::pin(self.connect()).await?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok(self.returning(response, sender)),
            Err(error) => Err(SendError::Http(error.into_error())),
        }
    }

    /// The response, its body holding the connection until it has been read.
    fn returning(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: SendRequest<RequestBody>,
    ) -> Response<PooledBody> {
        let pool = Arc::downgrade(self);
        response.map(|inner| PooledBody {
            inner,
            ended: false,
            connection: Some((sender, pool)),
        })
    }

    /// The most recently used idle connection that is still open and not idle for too long.
    fn checkout(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((sender, since)) = idle.pop() {
            if since.elapsed() >= self.idle_timeout {
                // The rest are older still.
                idle.clear();
                return None;
            }
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// Puts back a connection whose response was read to its end: at once when it is ready for
    /// the next request (usual: its connection task is done with the response), else from a
    /// task that waits for it to be (which ends with the connection if the upstream closes it).
    fn keep_when_ready(self: &Arc<Self>, mut sender: SendRequest<RequestBody>) {
        if sender.is_ready() {
            self.put(sender);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            if sender.ready().await.is_ok()
                && let Some(pool) = pool.upgrade()
            {
                pool.put(sender);
            }
        });
    }

    fn put(&self, sender: SendRequest<RequestBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // The oldest first: those idle too long are closed (dropping a sender closes its
        // connection), and the pool never holds more than its bound.
        let stale = idle
            .iter()
            .take_while(|(_, since)| since.elapsed() >= self.idle_timeout)
            .count();
        let over = (idle.len() - stale + 1).saturating_sub(MAX_IDLE);
        idle.drain(..stale + over);
        idle.push((sender, Instant::now()));
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, SendError> {
        let (sender, connection) = match &self.dialer {
            Dialer::Network(connector) => {
                let mut connector = connector.clone();
                let connecting = async {
                    std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
                    connector.call(self.target.clone()).await
                };
                let io = connecting
                    .await
                    .map_err(|error| SendError::Connect(crate::error::error_chain(&*error)))?;
                let (sender, connection) = http1::handshake(io).await.map_err(SendError::Http)?;
                (sender, Box::pin(connection) as Connecting)
            }
            #[cfg(test)]
            Dialer::InMemory(serve) => {
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                serve(theirs);
                let io = hyper_util::rt::TokioIo::new(ours);
                let (sender, connection) = http1::handshake(io).await.map_err(SendError::Http)?;
                (sender, Box::pin(connection) as Connecting)
            }
        };
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// Idle connections now (for tests).
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// An upstream response's body. Read to its end, it puts its connection back in the pool when
/// dropped; dropped before its end, its connection is closed (hyper closes a connection whose
/// response was abandoned).
pub(crate) struct PooledBody {
    inner: Incoming,
    /// `poll_frame` said there is nothing more (a chunked body's only sign of its end).
    ended: bool,
    connection: Option<(SendRequest<RequestBody>, Weak<Pool>)>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some((sender, pool)) = self.connection.take()
            && (self.ended || self.inner.is_end_stream())
            && let Some(pool) = pool.upgrade()
        {
            pool.keep_when_ready(sender);
        }
    }
}

#[cfg(test)]
mod tests;
