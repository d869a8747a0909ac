//! The admin listener, on its own address: `/healthz` (the process answers), `/readyz`
//! (policies loaded, IdP keys fetched, state store reachable, audit spool taking events),
//! `/metrics` (Prometheus text format), the revocation endpoints (`GET`/`POST /revocations`,
//! `DELETE /revocations/{subject}`) and the grant endpoints (`GET`/`POST /grants`,
//! `DELETE /grants/{id}`: `admin_grants.rs`), which need the admin bearer token.
//! Every request to the revocation endpoints is an audit event, allowed or refused (a missing or
//! wrong token included) — except lifting a subject that is not revoked, which changes nothing
//! and is answered 404.

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

use crate::audit_trail::AdminAct;
use crate::gateway::Gateway;

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

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"title": status.canonical_reason(), "status": status.as_u16(), "detail": detail}),
    )
}

/// Serves the admin listener until `shutdown` completes.
pub(crate) async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gateway = gateway.clone();
                async move {
                    // The token in force now: a reload may have replaced it.
                    let token = gateway.admin_token().current();
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
/// refusal to send, and why (for the audit event).
fn refusal(
    request: &Request<Incoming>,
    token: Option<&str>,
) -> Option<(Response<Full<Bytes>>, &'static str)> {
    let Some(token) = token else {
        return Some((
            problem(
                StatusCode::FORBIDDEN,
                "revocations are disabled: no `admin.token_file` is configured",
            ),
            "revocations are disabled (no admin.token_file)",
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
        let why = if presented.is_empty() {
            "missing_admin_token"
        } else {
            "bad_admin_token"
        };
        Some((refused, why))
    }
}

/// The audited action of a request to the revocation endpoints.
fn action_of(method: &Method, path: &str) -> &'static str {
    match (method, path) {
        (&Method::GET, "/revocations") => "revocation:list",
        (&Method::POST, "/revocations") => "revocation:create",
        (&Method::DELETE, _) if path.starts_with("/revocations/") => "revocation:lift",
        _ => "revocation:other",
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
        _ if path == "/grants" || path.starts_with("/grants/") => {
            if let Some((refused, why)) = refusal(&request, token) {
                gateway.record_admin(AdminAct {
                    method: method.as_str(),
                    path: &path,
                    peer,
                    action: match method {
                        Method::GET => "grant:list",
                        Method::POST => "grant:create",
                        Method::DELETE => "grant:lift",
                        _ => "grant:other",
                    },
                    subject: None,
                    authenticated: false,
                    status: refused.status().as_u16(),
                    detail: Some(why.to_owned()),
                });
                return refused;
            }
            crate::admin_grants::handle(gateway, request, peer).await
        }
        _ if path == "/revocations" || path.starts_with("/revocations/") => {
            let mut act = AdminAct {
                method: method.as_str(),
                path: &path,
                peer,
                action: action_of(&method, &path),
                subject: None,
                authenticated: false,
                status: 0,
                detail: None,
            };
            if let Some((refused, why)) = refusal(&request, token) {
                act.status = refused.status().as_u16();
                act.detail = Some(why.to_owned());
                gateway.record_admin(act);
                return refused;
            }
            act.authenticated = true;
            let (response, audited) = revocations(gateway, request, &method, &path, &mut act).await;
            if audited {
                act.status = response.status().as_u16();
                gateway.record_admin(act);
            }
            response
        }
        _ => problem(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

/// A refusal of an authenticated revocation request, its reason kept for the audit event.
fn refuse(
    act: &mut AdminAct<'_>,
    status: StatusCode,
    detail: String,
) -> (Response<Full<Bytes>>, bool) {
    let response = problem(status, &detail);
    act.detail = Some(match act.detail.take() {
        Some(asked) => format!("{asked}; {detail}"),
        None => detail,
    });
    (response, true)
}

/// Serves one revocation request, filling in what its audit event says; `false` when it is not
/// to be audited (a lift of a subject that is not revoked changes nothing).
async fn revocations(
    gateway: &Gateway,
    request: Request<Incoming>,
    method: &Method,
    path: &str,
    act: &mut AdminAct<'_>,
) -> (Response<Full<Bytes>>, bool) {
    match (method, path) {
        (&Method::GET, "/revocations") => list(gateway, act).await,
        (&Method::POST, "/revocations") => revoke(gateway, request, act).await,
        (&Method::DELETE, _) => lift(gateway, path, act).await,
        _ => refuse(
            act,
            StatusCode::METHOD_NOT_ALLOWED,
            "GET or POST /revocations, DELETE /revocations/{subject}".to_owned(),
        ),
    }
}

/// `GET /revocations`: every subject revoked, and until when.
async fn list(gateway: &Gateway, act: &mut AdminAct<'_>) -> (Response<Full<Bytes>>, bool) {
    match gateway.state().revocations().await {
        Ok(list) => {
            let mut list: Vec<Value> = list
                .into_iter()
                .map(|(subject, until)| json!({"subject": subject, "until_unix": until}))
                .collect();
            list.sort_by(|a, b| a["subject"].as_str().cmp(&b["subject"].as_str()));
            (json_response(StatusCode::OK, &json!(list)), true)
        }
        Err(error) => refuse(act, StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}

/// `POST /revocations`: revokes a subject on every replica.
async fn revoke(
    gateway: &Gateway,
    request: Request<Incoming>,
    act: &mut AdminAct<'_>,
) -> (Response<Full<Bytes>>, bool) {
    let body = match Limited::new(request.into_body(), 16 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let detail = "body too large or unreadable".to_owned();
            return refuse(act, StatusCode::BAD_REQUEST, detail);
        }
    };
    let revoke: RevokeRequest = match serde_json::from_slice(&body) {
        Ok(revoke) => revoke,
        Err(error) => {
            let detail = format!("expected {{\"subject\", \"until_unix\"?, \"reason\"?}}: {error}");
            return refuse(act, StatusCode::BAD_REQUEST, detail);
        }
    };
    if revoke.subject.is_empty()
        || revoke.subject.len() > 256
        || revoke.subject.chars().any(char::is_control)
    {
        let detail = "`subject` must be 1 to 256 printable characters".to_owned();
        return refuse(act, StatusCode::BAD_REQUEST, detail);
    }
    act.subject = Some(revoke.subject.clone());
    let until = if revoke.until_unix == 0 {
        "for good".to_owned()
    } else {
        format!("until {}", revoke.until_unix)
    };
    let reason = revoke.reason.as_deref().map(|r| format!(": {r}"));
    act.detail = Some(format!("{until}{}", reason.unwrap_or_default()));
    match gateway.revoke(&revoke.subject, revoke.until_unix).await {
        Ok(()) => {
            // The subject's browser sessions end too (the revocation alone already refuses
            // them; ending them means a lifted revocation does not bring them back).
            let sessions_ended = match gateway.end_sessions(&revoke.subject).await {
                Ok(ended) => {
                    if let Some(detail) = &mut act.detail {
                        detail.push_str(&format!("; {ended} browser session(s) ended"));
                    }
                    Some(ended)
                }
                Err(error) => {
                    tracing::warn!(%error, "revoked, but the subject's sessions were not ended");
                    None
                }
            };
            let created = json!({"subject": revoke.subject, "until_unix": revoke.until_unix, "sessions_ended": sessions_ended});
            (json_response(StatusCode::CREATED, &created), true)
        }
        Err(error) => refuse(act, StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}

/// `DELETE /revocations/{subject}`: lifts a revocation on every replica.
async fn lift(
    gateway: &Gateway,
    path: &str,
    act: &mut AdminAct<'_>,
) -> (Response<Full<Bytes>>, bool) {
    let subject = path.trim_start_matches("/revocations/");
    let subject = percent_encoding::percent_decode_str(subject)
        .decode_utf8_lossy()
        .into_owned();
    if subject.is_empty() || subject.starts_with('/') {
        let detail = "DELETE /revocations/{subject}".to_owned();
        return refuse(act, StatusCode::NOT_FOUND, detail);
    }
    act.subject = Some(subject.clone());
    match gateway.lift(&subject).await {
        Ok(true) => {
            let lifted = json!({"lifted": subject});
            (json_response(StatusCode::OK, &lifted), true)
        }
        Ok(false) => {
            let detail = format!("`{subject}` is not revoked");
            (problem(StatusCode::NOT_FOUND, &detail), false)
        }
        Err(error) => refuse(act, StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}
