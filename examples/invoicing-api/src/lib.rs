//! An example e-invoicing API that stands in for the ERP module or SaaS product behind
//! invoiceguard in the demo, the tests and the benchmarks. It trusts whoever calls it, as such APIs
//! often do behind a gateway, and takes the caller's name from the gateway's
//! `x-invoiceguard-subject` header.
//!
//! Invoices (create, read, list, update, submit, approve, reject, cancel), partners with bank
//! accounts, exports, reports, settings, users and role assignment, and the API's own audit log.
//! Everything lives in memory. `GET /__journal` (reached directly, never through the gateway)
//! lists the last requests received with their headers, so tests can see what the gateway sent.

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

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let store = Arc::new(Mutex::new(Store::seeded()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let store = store.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(store.clone(), request));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    store: Arc<Mutex<Store>>,
    request: Request<Incoming>,
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
    let mut store = store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if parts.uri.path() != "/__journal" {
        store.journal(&parts);
    }
    Ok(handlers::route(&mut store, &parts, &body))
}
