//! The admin listener, on its own address: `/healthz` (the process answers), `/readyz`
//! (policies loaded, IdP keys fetched, state store reachable, audit spool taking events),
//! `/metrics` (Prometheus text format) and the revocation endpoints
//! (`GET`/`POST /revocations`, `DELETE /revocations/{subject}`), which need the admin bearer token.
//! Every revocation and lift is an audit event.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::pipeline::Gateway;

/// A revocation request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// The subject to block: a user's `sub`, an integration account, an API key's account.
    subject: String,
    /// Until when (Unix seconds); for good when absent or 0.
    #[serde(default)]
    until_unix: u64,
    /// Why (recorded in the audit event).
    reason: Option<String>,
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"title": status.canonical_reason(), "status": status.as_u16(), "detail": detail}),
    )
}

/// Serves the admin listener until `shutdown` completes.
pub(crate) async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    token: Option<String>,
    shutdown: impl Future<Output = ()>,
) {
    let token = Arc::new(token);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let (gateway, token) = (gateway.clone(), token.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (gateway, token) = (gateway.clone(), token.clone());
                async move {
                    Ok::<_, Infallible>(handle(&gateway, request, peer, token.as_deref()).await)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `None` when the request carries the admin token (compared in constant time); otherwise the
/// refusal to send.
fn refusal(request: &Request<Incoming>, token: Option<&str>) -> Option<Response<Full<Bytes>>> {
    let Some(token) = token else {
        return Some(problem(
            StatusCode::FORBIDDEN,
            "revocations are disabled: no `admin.token_file` is configured",
        ));
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let digest =
        |text: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        digest(presented).as_ref(),
        digest(token).as_ref(),
    )
    .is_ok()
    {
        None
    } else {
        let mut refused = problem(
            StatusCode::UNAUTHORIZED,
            "the admin token is missing or wrong",
        );
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"invoiceguard-admin\""),
        );
        Some(refused)
    }
}

async fn handle(
    gateway: &Gateway,
    request: Request<Incoming>,
    peer: SocketAddr,
    token: Option<&str>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            let (ready, report) = gateway.readiness().await;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, &report)
        }
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(Full::new(Bytes::from(
                invoiceguard_telemetry::metrics().render(),
            )));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ if path == "/revocations" || path.starts_with("/revocations/") => {
            if let Some(refused) = refusal(&request, token) {
                return refused;
            }
            revocations(gateway, request, &method, &path, peer).await
        }
        _ => problem(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

async fn revocations(
    gateway: &Gateway,
    request: Request<Incoming>,
    method: &Method,
    path: &str,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    match (method, path) {
        (&Method::GET, "/revocations") => match gateway.state().revocations().await {
            Ok(list) => {
                let mut list: Vec<Value> = list
                    .into_iter()
                    .map(|(subject, until)| json!({"subject": subject, "until_unix": until}))
                    .collect();
                list.sort_by(|a, b| a["subject"].as_str().cmp(&b["subject"].as_str()));
                json_response(StatusCode::OK, &json!(list))
            }
            Err(error) => problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        },
        (&Method::POST, "/revocations") => {
            let body = match Limited::new(request.into_body(), 16 * 1024).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return problem(StatusCode::BAD_REQUEST, "body too large or unreadable"),
            };
            let revoke: RevokeRequest = match serde_json::from_slice(&body) {
                Ok(revoke) => revoke,
                Err(error) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        &format!("expected {{\"subject\", \"until_unix\"?, \"reason\"?}}: {error}"),
                    );
                }
            };
            if revoke.subject.is_empty()
                || revoke.subject.len() > 256
                || revoke.subject.chars().any(char::is_control)
            {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "`subject` must be 1 to 256 printable characters",
                );
            }
            match gateway
                .revoke(
                    &revoke.subject,
                    revoke.until_unix,
                    revoke.reason.as_deref(),
                    peer,
                )
                .await
            {
                Ok(()) => json_response(
                    StatusCode::CREATED,
                    &json!({"subject": revoke.subject, "until_unix": revoke.until_unix}),
                ),
                Err(error) => problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
            }
        }
        (&Method::DELETE, _) => {
            let subject = path.trim_start_matches("/revocations/");
            let subject = percent_encoding::percent_decode_str(subject)
                .decode_utf8_lossy()
                .into_owned();
            if subject.is_empty() || subject.starts_with('/') {
                return problem(StatusCode::NOT_FOUND, "DELETE /revocations/{subject}");
            }
            match gateway.lift(&subject, peer).await {
                Ok(()) => json_response(StatusCode::OK, &json!({"lifted": subject})),
                Err(error) => problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
            }
        }
        _ => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET or POST /revocations, DELETE /revocations/{subject}",
        ),
    }
}
