//! An HTTP collector (what a Vector `http_server` source or a Splunk HEC does for the gateway's
//! HTTP audit sink, or an OpenTelemetry collector's OTLP/HTTP receiver for its spans): accepts
//! batches on POST, keeps every body with the `Authorization` header it came with, and can be
//! told to fail (503) for a while.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::oneshot;

/// What the collector received.
#[derive(Default)]
struct Received {
    /// Every accepted batch: its `Authorization` header and body.
    batches: Vec<(String, Vec<u8>)>,
    /// Batches answered 503.
    refused: usize,
}

/// A running collector on its own thread and runtime, stopped when dropped.
pub struct HttpCollector {
    /// Its address.
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    failing: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpCollector {
    /// Starts the collector on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Received::default()));
        let failing = Arc::new(AtomicBool::new(false));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (state, fail) = (received.clone(), failing.clone());
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        _ = &mut stopped => return,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let (state, fail) = (state.clone(), fail.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            collect(request, state.clone(), fail.clone())
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Ok(Self {
            addr,
            received,
            failing,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The URL events are posted to.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// While set, every batch is answered 503 (and not kept).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Every accepted event line, parsed, in arrival order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.bodies()
            .iter()
            .flat_map(|body| body.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()
    }

    /// Every accepted batch's body, as text.
    pub fn bodies(&self) -> Vec<String> {
        self.raw_bodies()
            .iter()
            .map(|body| String::from_utf8_lossy(body).into_owned())
            .collect()
    }

    /// Every accepted batch's body, as sent (OTLP batches are protobuf).
    pub fn raw_bodies(&self) -> Vec<Vec<u8>> {
        let received = self.received.lock().unwrap_or_else(|p| p.into_inner());
        received
            .batches
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// The `Authorization` headers of the accepted batches.
    pub fn authorizations(&self) -> Vec<String> {
        let received = self.received.lock().unwrap_or_else(|p| p.into_inner());
        received
            .batches
            .iter()
            .map(|(auth, _)| auth.clone())
            .collect()
    }

    /// How many batches were answered 503.
    pub fn refused(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refused
    }
}

async fn collect(
    request: Request<Incoming>,
    received: Arc<Mutex<Received>>,
    failing: Arc<AtomicBool>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut state = received.lock().unwrap_or_else(|p| p.into_inner());
    let status = if failing.load(Ordering::SeqCst) {
        state.refused += 1;
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        state.batches.push((authorization, body));
        StatusCode::OK
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"{\"text\":\"Success\"}")));
    *response.status_mut() = status;
    Ok(response)
}

impl Drop for HttpCollector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
