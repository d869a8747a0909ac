//! An example e-invoicing API that stands in for the ERP module or SaaS product behind
//! invoiceguard in the demo, the tests and the benchmarks. It trusts whoever calls it, as such APIs
//! often do behind a gateway, and takes the caller's name from the gateway's
//! `x-invoiceguard-subject` header.
//!
//! Invoices (create, read, list, update, submit, approve, reject, cancel), partners with bank
//! accounts, exports, reports, settings, users and role assignment, and the API's own audit log.
//! Everything lives in memory. `GET /__journal` (reached directly, never through the gateway)
//! lists the last requests received with their headers (and the SHA-256 of the client
//! certificate presented over TLS), so tests can see what the gateway sent. A `delay_ms=N` query
//! parameter (at most 30000) makes any answer slow, as a busy ERP's would be. It serves plain
//! HTTP ([`serve`]) or TLS, optionally requiring client certificates ([`serve_tls`]).

mod handlers;
mod store;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use store::Store;

/// The largest request body the example API reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Serves the API over plain HTTP on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    serve_with(listener, None).await;
}

/// Serves the API over TLS (HTTP/1.1) with `config` — which may require client certificates —
/// until the task is dropped.
pub async fn serve_tls(listener: TcpListener, config: Arc<rustls::ServerConfig>) {
    serve_with(listener, Some(tokio_rustls::TlsAcceptor::from(config))).await;
}

async fn serve_with(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    let store = Arc::new(Mutex::new(Store::seeded()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (store, tls) = (store.clone(), tls.clone());
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let service = service_fn(move |request| handle(store.clone(), request, None));
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let fingerprint = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| sha256_hex(leaf.as_ref()));
                    let service = service_fn(move |request| {
                        handle(store.clone(), request, fingerprint.clone())
                    });
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `delay_ms` query parameter, at most 30 s.
fn delay(uri: &http::Uri) -> Option<std::time::Duration> {
    let millis: u64 = uri
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay_ms="))?
        .parse()
        .ok()?;
    Some(std::time::Duration::from_millis(millis.min(30_000)))
}

async fn handle(
    store: Arc<Mutex<Store>>,
    request: Request<Incoming>,
    client_certificate: Option<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(handlers::json(
                413,
                &serde_json::json!({"error": "body too large"}),
            ));
        }
    };
    if parts.uri.path() != "/__journal" {
        store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .journal(&parts, client_certificate);
    }
    if let Some(wait) = delay(&parts.uri) {
        tokio::time::sleep(wait).await;
    }
    let mut store = store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(handlers::route(&mut store, &parts, &body))
}
