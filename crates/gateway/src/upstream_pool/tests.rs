//! Tests of `upstream_pool.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// An upstream on a free port that answers `ok` (with a length; chunked at `/chunked`; 1 MiB
/// at `/large`) and counts its connections; with `close_after`, it closes each connection
/// that long after accepting it.
async fn upstream(close_after: Option<Duration>) -> (Uri, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let body = match request.uri().path() {
                        // No length: the body is sent chunked.
                        "/chunked" => StreamBody::new(futures_util::stream::iter([Ok::<
                            _,
                            std::convert::Infallible,
                        >(
                            Frame::data(Bytes::from_static(b"ok")),
                        )]))
                        .boxed(),
                        "/large" => Full::new(Bytes::from(vec![b'x'; 1 << 20])).boxed(),
                        _ => Full::new(Bytes::from_static(b"ok")).boxed(),
                    };
                    Ok::<_, std::convert::Infallible>(Response::new(body))
                });
                let serving = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                match close_after {
                    None => {
                        let _ = serving.await;
                    }
                    Some(after) => {
                        let _ = tokio::time::timeout(after, serving).await;
                    }
                }
            });
        }
    });
    (format!("http://{address}/").parse().unwrap(), accepted)
}

fn pool(target: Uri, idle_timeout: Duration) -> Arc<Pool> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::tls::client_config(None, None).unwrap())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Pool::new(Dialer::Network(connector), target, idle_timeout)
}

async fn get(pool: &Arc<Pool>) -> Result<String, SendError> {
    get_path(pool, "/invoices").await
}

fn request(path: &str) -> Request<RequestBody> {
    Request::get(path)
        .header(http::header::HOST, "upstream")
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

async fn get_path(pool: &Arc<Pool>, path: &str) -> Result<String, SendError> {
    let response = pool.send(request(path)).await?;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

/// A connection goes back when its answer's body is dropped, or from a task when it is not
/// ready yet: give that its turn.
async fn settle(pool: &Arc<Pool>, idle: usize) {
    for _ in 0..100 {
        if pool.idle_count() == idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pool.idle_count(), idle);
}

/// Answers with a length and chunked ones (whose end only `poll_frame` tells) alike.
#[tokio::test]
async fn one_connection_carries_request_after_request() {
    let (target, accepted) = upstream(None).await;
    let pool = pool(target, Duration::from_secs(60));
    for path in ["/invoices", "/chunked", "/invoices", "/chunked", "/chunked"] {
        assert_eq!(get_path(&pool, path).await.unwrap(), "ok");
        settle(&pool, 1).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_abandoned_before_its_end_does_not_give_its_connection_back() {
    let (target, accepted) = upstream(None).await;
    let pool = pool(target, Duration::from_secs(60));
    let response = pool.send(request("/large")).await.unwrap();
    drop(response);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.idle_count(), 0);
    assert_eq!(get(&pool).await.unwrap(), "ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the abandoned one was not reused"
    );
}

#[tokio::test]
async fn concurrent_requests_each_get_a_connection_and_all_are_kept() {
    let (target, accepted) = upstream(None).await;
    let pool = pool(target, Duration::from_secs(60));
    let (a, b, c) = tokio::join!(get(&pool), get(&pool), get(&pool));
    for answer in [a, b, c] {
        assert_eq!(answer.unwrap(), "ok");
    }
    settle(&pool, 3).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_eq!(get(&pool).await.unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "a kept one was used");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_used_again() {
    let (target, accepted) = upstream(Some(Duration::from_millis(300))).await;
    let pool = pool(target, Duration::from_secs(60));
    assert_eq!(get(&pool).await.unwrap(), "ok");
    settle(&pool, 1).await;
    // The upstream closes it while it is idle.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&pool).await.unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_idle_too_long_is_closed() {
    let (target, accepted) = upstream(None).await;
    let pool = pool(target, Duration::from_millis(50));
    assert_eq!(get(&pool).await.unwrap(), "ok");
    settle(&pool, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(&pool).await.unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    settle(&pool, 1).await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let pool = pool(
        format!("http://{address}/").parse().unwrap(),
        Duration::from_secs(60),
    );
    match get(&pool).await {
        Err(SendError::Connect(cause)) => assert!(!cause.is_empty()),
        other => panic!("{other:?}"),
    }
}
