//! The phases without a socket: the gateway built from a configuration (memory state, a spool in
//! a temporary folder, the repository's baseline policies), its upstream an HTTP/1.1 server in
//! this process over in-memory pipes, and requests made in memory and handed to
//! [`Gateway::handle`]. Each test is one phase's refusal (or what it must leave behind), at
//! unit-test speed; what needs real parts (the IdP, Redis, sockets, signals) is in the e2e suite.
//! Integration accounts authenticate with API keys here: tokens need the IdP.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::config::Config;
use crate::context::Connection;
use crate::gateway::Gateway;
use crate::upstream::Upstream;

/// The API keys of the test's integration accounts: `erp-sync` reads and writes invoices and
/// exports (100,000 rows a day, `entities.toml`); `reader` only reads invoices.
const ERP_KEY: &str = "erp-key-0123456789";
const READER_KEY: &str = "reader-key-0123456789";

/// What the in-memory upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: http::HeaderMap,
    /// The `authorized` events in the spool while the upstream answered.
    authorized_events: usize,
}

/// A folder removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "invoiceguard-phases-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the in-memory upstream answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// 200, with `x-total-count: 40` on exports.
    Ok,
    /// Closes every connection before answering.
    Hangs,
}

struct World {
    gateway: Gateway,
    seen: Arc<Mutex<Vec<Seen>>>,
    spool: PathBuf,
    connection: Connection,
    _dir: TempDir,
}

/// Copies the baseline policies into `into/name`.
fn copy_policies(into: &Path, name: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let target = into.join(name);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
    }
    target
}

/// Rewrites one file of a policy folder.
fn edit(dir: &Path, file: &str, change: impl Fn(String) -> String) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, change(text)).unwrap();
}

/// No change to the policies.
fn baseline(_: &Path) {}

/// Every event in the spool, in order.
fn events(spool: &Path) -> Vec<Value> {
    let mut events = Vec::new();
    for (_, path) in invoiceguard_audit::segments(spool).unwrap_or_default() {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        events.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    events
}

impl World {
    async fn start() -> Self {
        Self::start_with("", baseline, Answer::Ok).await
    }

    /// A gateway with `extra` appended to its configuration (keys of `[policy]`, then any
    /// table), its policy folder changed by `change`, its upstream answering as `answer` says.
    async fn start_with(extra: &str, change: impl Fn(&Path), answer: Answer) -> Self {
        let dir = TempDir::new();
        let policies = copy_policies(&dir.0, "policies");
        change(&policies);
        let spool = dir.0.join("spool");
        let hash = invoiceguard_authn::api_key_hash;
        let config = format!(
            r#"
[listen]
address = "127.0.0.1:0"
hosts = ["invoices.example"]

[upstream]
url = "http://upstream.invalid"

[authn]
issuer = "http://127.0.0.1:9"
audience = ["urn:invoiceguard:invoicing-api"]

[[authn.api_keys]]
account = "erp-sync"
scopes = ["invoices:read", "invoices:write", "exports:create"]
sha256 = ["{erp}"]

[[authn.api_keys]]
account = "reader"
scopes = ["invoices:read"]
sha256 = ["{reader}"]

[audit]
spool = "{spool}"

[policy]
dir = "{policies}"
watch_ms = 0
{extra}
"#,
            erp = hash(ERP_KEY),
            reader = hash(READER_KEY),
            policies = policies.display(),
            spool = spool.display(),
        );
        let file = dir.0.join("invoiceguard.toml");
        std::fs::write(&file, config).unwrap();
        let config = Config::load(&file).unwrap();
        let mut gateway = Gateway::start(&config).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        gateway.upstream = in_memory_upstream(&config, seen.clone(), spool.clone(), answer);
        Self {
            gateway,
            seen,
            spool,
            connection: Connection {
                peer: "192.0.2.7:50000".parse().unwrap(),
                tls: false,
                client_certificate: None,
            },
            _dir: dir,
        }
    }

    /// Sends `request` through every phase; the answer and its problem or body as JSON.
    async fn send(&self, request: Request<Full<Bytes>>) -> (StatusCode, Value, http::HeaderMap) {
        let response = self.gateway.handle(request, &self.connection).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, json, parts.headers)
    }

    /// The request's `complete` event.
    fn event(&self, headers: &http::HeaderMap) -> Value {
        let id = headers["x-request-id"].to_str().unwrap();
        events(&self.spool)
            .into_iter()
            .find(|e| e["request_id"] == id && e["stage"] == "complete")
            .unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The upstream, in this process: an HTTP/1.1 server on each in-memory connection, recording what
/// it is sent.
fn in_memory_upstream(
    config: &Config,
    seen: Arc<Mutex<Vec<Seen>>>,
    spool: PathBuf,
    answer: Answer,
) -> Upstream {
    let serve = move |io: tokio::io::DuplexStream| {
        if answer == Answer::Hangs {
            drop(io);
            return;
        }
        let (seen, spool) = (seen.clone(), spool.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let (seen, spool) = (seen.clone(), spool.clone());
                async move {
                    let authorized = events(&spool)
                        .iter()
                        .filter(|e| e["stage"] == "authorized")
                        .count();
                    let export = request.uri().path() == "/exports";
                    seen.lock().unwrap().push(Seen {
                        method: request.method().to_string(),
                        path: request.uri().path().to_owned(),
                        headers: request.headers().clone(),
                        authorized_events: authorized,
                    });
                    let mut response =
                        Response::builder().header("content-type", "application/json");
                    if export {
                        response = response.header("x-total-count", "40");
                    }
                    response.body(Full::new(Bytes::from_static(b"{\"id\":\"INV-9\"}")))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    };
    let api_key_header = http::HeaderName::from_static("x-api-key");
    Upstream::new(&config.upstream, api_key_header)
        .unwrap()
        .in_memory(Arc::new(serve))
}

/// A request to the gateway's own host.
fn request(method: &str, path: &str, key: Option<&str>) -> http::request::Builder {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "invoices.example");
    match key {
        Some(key) => builder.header("x-api-key", key),
        None => builder,
    }
}

fn empty(builder: http::request::Builder) -> Request<Full<Bytes>> {
    builder.body(Full::new(Bytes::new())).unwrap()
}

fn json_body(builder: http::request::Builder, body: &Value) -> Request<Full<Bytes>> {
    builder
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test]
async fn allowed_request_reaches_the_upstream_with_the_verified_identity_only() {
    let world = World::start().await;
    let request = request("GET", "/invoices/INV-1", Some(ERP_KEY))
        .header("x-invoiceguard-roles", "admin")
        .header("x-forwarded-user", "mallory");
    let (status, _, headers) = world.send(empty(request)).await;
    assert_eq!(status, StatusCode::OK);
    let seen = world.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/invoices/INV-1");
    assert_eq!(seen[0].headers["x-invoiceguard-subject"], "erp-sync");
    assert_eq!(seen[0].headers["x-invoiceguard-roles"], "");
    assert!(seen[0].headers.get("x-forwarded-user").is_none());
    assert!(seen[0].headers.get("x-api-key").is_none());
    let event = world.event(&headers);
    assert_eq!(event["decision"]["effect"], "allow");
    assert_eq!(event["actor"]["id"], "erp-sync");
    assert_eq!(event["outcome"]["upstream_status"], 200);
}

// normalize

#[tokio::test]
async fn normalize_refuses_a_twice_encoded_path_before_anything_else() {
    let world = World::start().await;
    let path = "/invoices/%252e%252e%252fsettings";
    let (status, problem, headers) = world.send(empty(request("GET", path, Some(ERP_KEY)))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        problem["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    assert!(world.seen().is_empty());
    let event = world.event(&headers);
    assert_eq!(event["decision"]["reason"], "bad_request");
    assert!(event["actor"].is_null(), "refused before authentication");
}

#[tokio::test]
async fn normalize_refuses_a_foreign_host_and_an_oversized_body() {
    let world = World::start().await;
    let foreign = Request::builder()
        .uri("/invoices/INV-1")
        .header("host", "evil.example")
        .header("x-api-key", ERP_KEY);
    let (status, _, _) = world.send(empty(foreign)).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    let large = request("POST", "/invoices", Some(ERP_KEY)).header("content-length", "999999999");
    let (status, _, _) = world.send(empty(large)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(world.seen().is_empty());
}

#[tokio::test]
async fn normalize_refuses_an_unprintable_break_glass_reason() {
    let world = World::start().await;
    let request =
        request("GET", "/invoices/INV-1", Some(ERP_KEY)).header("x-break-glass-reason", "");
    let (status, problem, _) = world.send(empty(request)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("x-break-glass-reason")
    );
}

// route

#[tokio::test]
async fn route_denies_an_unknown_path_and_still_records_a_valid_caller() {
    let world = World::start().await;
    let (status, _, headers) = world
        .send(empty(request("GET", "/nowhere", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(world.seen().is_empty());
    let event = world.event(&headers);
    assert_eq!(event["decision"]["reason"], "no_route");
    assert_eq!(event["actor"]["id"], "erp-sync");
}

#[tokio::test]
async fn route_refuses_a_credential_header_sent_twice() {
    let world = World::start().await;
    let twice = request("GET", "/invoices/INV-1", Some(ERP_KEY)).header("x-api-key", READER_KEY);
    let (status, problem, _) = world.send(empty(twice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("more than one")
    );
    assert!(world.seen().is_empty());
}

// authenticate

#[tokio::test]
async fn authenticate_refuses_a_missing_or_wrong_key_and_locks_out_the_guesser() {
    let world = World::start_with("[limits]\nfailed_auth_per_ip = 3", baseline, Answer::Ok).await;
    let (status, _, headers) = world
        .send(empty(request("GET", "/invoices/INV-1", None)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.event(&headers)["category"], "authentication");
    for _ in 0..3 {
        let (status, _, _) = world
            .send(empty(request("GET", "/invoices/INV-1", Some("guess"))))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, headers) = world
        .send(empty(request("GET", "/invoices/INV-1", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    assert!(world.seen().is_empty());
}

#[tokio::test]
async fn authenticate_refuses_a_revoked_account_on_its_next_request() {
    let world = World::start().await;
    let (status, _, _) = world
        .send(empty(request("GET", "/invoices/INV-1", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::OK);
    world
        .gateway
        .revoke("erp-sync", u64::MAX / 2)
        .await
        .unwrap();
    let (status, problem, headers) = world
        .send(empty(request("GET", "/invoices/INV-1", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    let event = world.event(&headers);
    assert_eq!(event["actor"]["id"], "erp-sync");
    assert_eq!(event["decision"]["reason"], "unauthenticated");
    let detail = event["decision"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("revoked"), "{event}");
    assert_eq!(world.seen().len(), 1);
}

// limit

#[tokio::test]
async fn limit_refuses_past_the_routes_rate() {
    let rate = |dir: &Path| {
        edit(dir, "routes.toml", |routes| {
            routes.replace(
                "rate_limit = { requests = 600, window_s = 60 }",
                "rate_limit = { requests = 2, window_s = 60 }",
            )
        })
    };
    let world = World::start_with("", rate, Answer::Ok).await;
    for _ in 0..2 {
        let (status, _, _) = world
            .send(empty(request("GET", "/invoices", Some(ERP_KEY))))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = world
        .send(empty(request("GET", "/invoices", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Another principal has a rate of its own.
    let (status, _, _) = world
        .send(empty(request("GET", "/invoices", Some(READER_KEY))))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.seen().len(), 3);
}

// enrich and settle

#[tokio::test]
async fn enrich_reserves_an_export_and_settle_charges_the_rows_returned() {
    let world = World::start().await;
    let export = |limit: u64| {
        json_body(
            request("POST", "/exports", Some(ERP_KEY)),
            &json!({"limit": limit}),
        )
    };
    // 50,000 rows reserved; the answer says 40 were exported, so 99,960 are left of the day's
    // 100,000.
    let (status, _, headers) = world.send(export(50_000)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.event(&headers)["outcome"]["export_rows"], 40);
    let (status, _, headers) = world.send(export(99_961)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        world.event(&headers)["decision"]["policies"],
        json!(["limits.export-daily-quota"])
    );
    let (status, _, _) = world.send(export(99_960)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.seen().len(), 2);
}

#[tokio::test]
async fn a_refused_or_failed_export_gives_its_rows_back() {
    let world = World::start_with("", baseline, Answer::Hangs).await;
    let export = |limit: u64| {
        json_body(
            request("POST", "/exports", Some(ERP_KEY)),
            &json!({"limit": limit}),
        )
    };
    let (status, _, headers) = world.send(export(90_000)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(world.event(&headers)["outcome"]["error_side"], "upstream");
    // Had the 90,000 rows stayed reserved, 100,000 would be over the day's quota (403).
    let (status, _, headers) = world.send(export(100_000)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{}", world.event(&headers));
}

// authorize

#[tokio::test]
async fn authorize_refuses_what_the_accounts_scopes_do_not_grant() {
    let world = World::start().await;
    let create = json_body(
        request("POST", "/invoices", Some(READER_KEY)),
        &json!({"amount": 1}),
    );
    let (status, _, headers) = world.send(create).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let event = world.event(&headers);
    assert_eq!(event["decision"]["effect"], "deny");
    assert_eq!(event["action"], "invoice:create");
    assert!(world.seen().is_empty());
}

#[tokio::test]
async fn authorize_keeps_integrations_from_interactive_actions_whatever_their_scopes() {
    let world = World::start().await;
    let update = json_body(request("PUT", "/settings", Some(ERP_KEY)), &json!({"x": 1}));
    let (status, _, headers) = world.send(update).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let policies = world.event(&headers)["decision"]["policies"].clone();
    assert_eq!(policies, json!(["integration.no-interactive-actions"]));
    assert!(world.seen().is_empty());
}

// audit, before forwarding

#[tokio::test]
async fn audit_writes_a_changes_authorized_event_before_the_upstream_sees_it() {
    let world = World::start().await;
    let (status, _, _) = world
        .send(empty(request("GET", "/invoices/INV-1", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::OK);
    let create = json_body(
        request("POST", "/invoices", Some(ERP_KEY)),
        &json!({"amount": 1}),
    );
    let (status, _, headers) = world.send(create).await;
    assert_eq!(status, StatusCode::OK);
    let seen = world.seen();
    assert_eq!(
        seen[0].authorized_events, 0,
        "a read has no `authorized` event"
    );
    assert_eq!(seen[1].method, "POST");
    assert_eq!(
        seen[1].authorized_events, 1,
        "written before the upstream got the request"
    );
    let id = headers["x-request-id"].to_str().unwrap();
    let stages: Vec<_> = events(&world.spool)
        .into_iter()
        .filter(|e| e["request_id"] == id)
        .map(|e| e["stage"].clone())
        .collect();
    assert_eq!(stages, [json!("authorized"), json!("complete")]);
}

// forward

#[tokio::test]
async fn forward_answers_502_when_the_upstream_drops_the_connection() {
    let world = World::start_with("", baseline, Answer::Hangs).await;
    let (status, problem, headers) = world
        .send(empty(request("GET", "/invoices/INV-1", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        problem["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    let event = world.event(&headers);
    assert_eq!(event["decision"]["effect"], "allow");
    assert_eq!(event["severity"], "error");
}

#[tokio::test]
async fn every_request_gets_exactly_one_complete_event_in_order() {
    let world = World::start().await;
    let mut ids = Vec::new();
    for (path, key) in [
        ("/invoices/INV-1", Some(ERP_KEY)),
        ("/nowhere", None),
        ("/settings", Some(ERP_KEY)),
        ("/invoices/%252e", Some(ERP_KEY)),
    ] {
        let (_, _, headers) = world.send(empty(request("GET", path, key))).await;
        ids.push(headers["x-request-id"].to_str().unwrap().to_owned());
    }
    let complete: Vec<_> = events(&world.spool)
        .into_iter()
        .filter(|e| e["stage"] == "complete" && e["category"] != "system")
        .filter_map(|e| e["request_id"].as_str().map(str::to_owned))
        .filter(|id| ids.contains(id))
        .collect();
    assert_eq!(complete, ids);
}

#[tokio::test]
async fn no_policy_set_loaded_refuses_every_request() {
    let broken = |dir: &Path| std::fs::write(dir.join("broken.cedar"), "permit (").unwrap();
    let world = World::start_with("", broken, Answer::Ok).await;
    let (status, problem, headers) = world
        .send(empty(request("GET", "/invoices/INV-1", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        problem["type"],
        "urn:invoiceguard:problem:decision-unavailable"
    );
    let event = world.event(&headers);
    assert_eq!(event["decision"]["policy_version"], "none");
    assert!(world.seen().is_empty());
}

#[tokio::test]
async fn authorize_records_a_shadow_sets_different_decision() {
    let world = World::start_with(
        "shadow_dir = \"shadow\"",
        |dir: &Path| {
            let shadow = copy_policies(dir.parent().unwrap(), "shadow");
            edit(&shadow, "integration.cedar", |text| {
                text.replace(
                    "principal.scopes.contains(\"invoices:read\")",
                    "principal.scopes.contains(\"never-granted\")",
                )
            });
        },
        Answer::Ok,
    )
    .await;
    let (status, _, headers) = world
        .send(empty(request("GET", "/invoices/INV-1", Some(ERP_KEY))))
        .await;
    assert_eq!(status, StatusCode::OK, "the enforced set decides");
    let decision = world.event(&headers)["decision"].clone();
    assert_eq!(decision["effect"], "allow");
    assert_eq!(decision["shadow"]["effect"], "deny", "{decision}");
}

#[tokio::test]
async fn a_break_glass_reason_flags_the_event_critical() {
    let world = World::start().await;
    let request = request("GET", "/invoices/INV-1", Some(ERP_KEY))
        .header("x-break-glass-reason", "INC-4711 outage");
    let (_, _, headers) = world.send(empty(request)).await;
    let event = world.event(&headers);
    assert_eq!(event["break_glass_reason"], "INC-4711 outage");
    assert_eq!(event["severity"], "critical");
    assert_eq!(event["category"], "break-glass");
    assert!(
        world.seen()[0]
            .headers
            .get("x-break-glass-reason")
            .is_none()
    );
}

#[tokio::test]
async fn enrich_cuts_off_a_body_longer_than_the_limit_and_a_form_override() {
    let world = World::start_with("[limits]\nmax_body_bytes = 64", baseline, Answer::Ok).await;
    // No declared length: the body is cut off as it streams, and never reaches the upstream whole.
    let long = request("POST", "/invoices", Some(ERP_KEY))
        .body(Full::new(Bytes::from(vec![b'x'; 1000])))
        .unwrap();
    let (status, _, headers) = world.send(long).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        world.event(&headers)
    );
    let form = request("POST", "/invoices", Some(ERP_KEY))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"amount=1&_method=DELETE")))
        .unwrap();
    let (status, problem, _) = world.send(form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().contains("_method"),
        "{problem}"
    );
}

#[tokio::test]
async fn settle_names_the_created_invoice_in_the_complete_event() {
    let world = World::start().await;
    let create = json_body(
        request("POST", "/invoices", Some(ERP_KEY)),
        &json!({"amount": 1}),
    );
    let (status, _, headers) = world.send(create).await;
    assert_eq!(status, StatusCode::OK);
    let id = headers["x-request-id"].to_str().unwrap();
    let resources: Vec<_> = events(&world.spool)
        .into_iter()
        .filter(|e| e["request_id"] == id)
        .map(|e| (e["stage"].clone(), e["resource"]["id"].clone()))
        .collect();
    assert_eq!(
        resources,
        [
            (json!("authorized"), json!("*")),
            (json!("complete"), json!("INV-9"))
        ]
    );
}
