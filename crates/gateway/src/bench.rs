//! For benchmarks only (cargo feature `bench`, never in the `invoiceguard` binary): the gateway
//! with the accept and forward phases alone — the same listener settings, connection handling,
//! upstream pool and header rewriting, and nothing else (no authentication, no policy, no audit).
//! It is the "proxy-only" line of the side-by-side benchmark: what the proxy itself costs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Request};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use invoiceguard_authn::{AuthMethod, Principal, PrincipalKind};
use tokio::net::TcpListener;

use crate::config::UpstreamConfig;
use crate::trace::TraceContext;
use crate::upstream::{ForwardContext, Upstream};

/// Forwards every request on `listener` to the upstream, until the task is dropped.
pub async fn serve_proxy_only(
    listener: TcpListener,
    upstream: &UpstreamConfig,
) -> Result<(), String> {
    let upstream = Arc::new(Upstream::new(
        upstream,
        HeaderName::from_static("x-api-key"),
    )?);
    let principal = Arc::new(Principal {
        kind: PrincipalKind::ServiceAccount,
        id: "proxy-only".to_owned(),
        client_id: None,
        roles: Vec::new(),
        scopes: Vec::new(),
        amr: Vec::new(),
        acr: None,
        auth_time: None,
        mfa: false,
        method: AuthMethod::ApiKey,
        issued_at: None,
        email: None,
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    let builder = Arc::new(builder);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (upstream, principal, builder) = (upstream.clone(), principal.clone(), builder.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let (upstream, principal) = (upstream.clone(), principal.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        forward(&upstream, &principal, peer, request).await,
                    )
                }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    upstream: &Upstream,
    principal: &Principal,
    peer: SocketAddr,
    request: Request<hyper::body::Incoming>,
) -> http::Response<crate::error::ResponseBody> {
    let request_id = crate::trace::random_uuid();
    let trace = TraceContext::from_headers(request.headers());
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let context = ForwardContext {
        principal,
        request_id: &request_id,
        trace: &trace,
        client_ip: peer.ip(),
        tls: false,
    };
    match upstream
        .send(
            Request::from_parts(
                parts,
                body.map_err(|error| crate::body::BodyError::Client(error.into()))
                    .boxed(),
            ),
            &path,
            &context,
        )
        .await
    {
        Ok(response) => response.map(BodyExt::boxed),
        Err(error) => error.to_response(&request_id, &[]),
    }
}

/// The normalize phase's canonical path, for its criterion bench: the decoded segments and the
/// path the upstream receives, or why the request is refused.
pub fn canonical_path(raw: &str) -> Result<(Vec<String>, String), String> {
    crate::canonical_path::canonical_path(raw)
        .map(|path| (path.segments, path.path))
        .map_err(|refused| refused.to_string())
}

/// Streams `chunks` to their end through a watermarked export body (a CSV when `csv`, else
/// JSON), or unchanged when `marked` is false: the bytes delivered. What `benches/watermark.rs`
/// compares — the cost of marking and hashing an export as it streams.
pub async fn stream_export(chunks: Vec<bytes::Bytes>, marked: bool, csv: bool) -> u64 {
    use crate::watermark::{Format, Mark, Watermarked};
    let frames: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>> = chunks
        .into_iter()
        .map(|chunk| Ok(hyper::body::Frame::data(chunk)))
        .collect();
    let inner = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let collected = if marked {
        let mark = Mark::new(
            "EXP-bench",
            "carol",
            "2026-12-06T00:00:00Z",
            "r-1",
            "_export",
        );
        let format = if csv { Format::Csv } else { Format::Json };
        Watermarked::new(inner, mark, format, Box::new(|_| {}))
            .collect()
            .await
    } else {
        inner.collect().await
    };
    collected.map_or(0, |body| body.to_bytes().len() as u64)
}
