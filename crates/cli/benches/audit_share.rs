//! What the audit trail costs a request: the gateway (full pipeline — JWT, Cedar baseline,
//! memory state, audit spool with a file sink) is driven with keep-alive requests from a hot
//! token, and its CPU time per request is read from /proc; then the audit path alone (event
//! redacted, encoded, chained, appended, group-committed and shipped by a file sink) is timed the
//! same way in this process. The share of the audit path in a request's CPU is what turning the
//! audit off would give back in throughput on a CPU-bound machine. A request that may change
//! something (here `POST /invoices`) writes a second event, `authorized`, before it is forwarded:
//! its cost is measured the same way. Writes `target/bench/audit.json`.
#![expect(clippy::unwrap_used, reason = "a bench fails loudly at setup")]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use invoiceguard_audit::{
    Actor, AuditConfig, AuditEvent, AuditLog, DecisionRecord, Outcome, RequestRecord,
    ResourceRecord, Source, now_rfc3339,
};
use invoiceguard_testkit::{GatewayProcess, Idp, TokenRequest, Upstream, repo_root};

/// The product binary's allocator, so the audit path alone is timed as the gateway runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONCURRENCY: usize = 16;

/// Requests per measurement: 20,000 under `cargo bench`; a quick check of the harness under
/// `cargo test` (which runs benches without `--bench`), reporting nothing.
fn requests() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        20_000
    } else {
        400
    }
}

/// User + system CPU seconds of a process (with all its threads) from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the command: state is field 0, utime 11, stime 12 (clock ticks, 100 per second).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// An event like the gateway writes for an allowed read.
fn event(i: usize) -> AuditEvent {
    AuditEvent {
        event_id: format!("9b1c6a1e-0000-4000-8000-{i:012}"),
        seq: 0,
        stage: "complete",
        time: now_rfc3339(),
        instance: String::new(),
        request_id: format!("c05112ce-0000-4000-8000-{i:012}"),
        trace_id: None,
        actor: Some(Actor {
            kind: "user",
            id: "alice".into(),
            roles: vec!["invoicing".into()],
            scopes: vec!["openid".into()],
            client_id: Some("invoiceguard-demo".into()),
            auth_method: "bearer_jwt",
            amr: vec!["pwd".into(), "otp".into()],
            acr: Some("urn:invoiceguard:acr:mfa".into()),
            mfa: true,
            grants: Vec::new(),
        }),
        source: Source {
            ip: "127.0.0.1".into(),
            user_agent: Some("hyper/1".into()),
            session: None,
        },
        request: RequestRecord {
            method: "GET".into(),
            path: "/invoices/INV-1".into(),
            route: Some("/invoices/{id}".into()),
            protocol: "HTTP/1.1".into(),
        },
        action: Some("invoice:read".into()),
        resource: Some(ResourceRecord {
            kind: "Invoice".into(),
            id: "INV-1".into(),
        }),
        break_glass_reason: None,
        decision: DecisionRecord {
            effect: "allow",
            reason: "policy",
            policies: vec!["rbac.invoicing-reads-invoices".into()],
            policy_version: "43abdaa7f1a1".into(),
            detail: None,
            shadow: None,
            inputs: None,
        },
        outcome: Outcome {
            status: 200,
            upstream_status: Some(200),
            duration_ms: 0.8,
            response_bytes: None,
            error_side: None,
            export_rows: None,
            export_delivery: None,
        },
        severity: "info",
        category: "authorization",
        lifecycle: None,
        prev_hash: String::new(),
    }
}

/// A request the bench sends: its method, path, JSON body and the status it must get.
#[derive(Clone, Copy)]
struct Call {
    method: &'static str,
    path: &'static str,
    body: &'static str,
    status: u16,
}

/// A read: one event.
const READ: Call = Call {
    method: "GET",
    path: "/invoices/INV-1",
    body: "",
    status: 200,
};

/// A creation: an `authorized` event before forwarding, and the `complete` one.
const CREATE: Call = Call {
    method: "POST",
    path: "/invoices",
    body: r#"{"partner_id": "P-1", "amount": 10.0}"#,
    status: 201,
};

/// Requests/s and the gateway's CPU µs per request, over `requests()` requests.
async fn drive(gateway: &GatewayProcess, token: Arc<String>, call: Call) -> (f64, f64) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url: http::Uri = format!("{}{}", gateway.url, call.path).parse().unwrap();
    let run = |count: usize| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move {
            let mut workers = Vec::new();
            for _ in 0..CONCURRENCY {
                let (client, url, token) = (client.clone(), url.clone(), token.clone());
                workers.push(tokio::spawn(async move {
                    for _ in 0..count / CONCURRENCY {
                        let request = http::Request::builder()
                            .method(call.method)
                            .uri(url.clone())
                            .header("authorization", format!("Bearer {token}"))
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(call.body.as_bytes())))
                            .unwrap();
                        let response = client.request(request).await.unwrap();
                        assert_eq!(response.status(), call.status);
                        response.into_body().collect().await.unwrap();
                    }
                }));
            }
            for worker in workers {
                worker.await.unwrap();
            }
        }
    };
    run(requests() / 10).await; // warm up: connections, the token cache, the page cache
    let pid = gateway.pid().to_string();
    let (cpu_before, started) = (cpu_seconds(&pid), Instant::now());
    run(requests()).await;
    let wall = started.elapsed().as_secs_f64();
    let cpu_us = (cpu_seconds(&pid) - cpu_before) / requests() as f64 * 1e6;
    (requests() as f64 / wall, cpu_us)
}

/// CPU µs per event of the audit path alone, with a file sink shipping (its CPU counts too).
async fn audit_path() -> f64 {
    let dir = std::env::temp_dir().join(format!("invoiceguard-audit-share-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("archive.log");
    let config = AuditConfig {
        spool: dir.join("spool"),
        sinks: vec![toml::from_str(&format!("name = \"archive\"\nfile = {archive:?}")).unwrap()],
        ..AuditConfig::default()
    };
    let log = std::sync::Arc::new(AuditLog::open(&config).unwrap());
    log.start_sinks();
    let cpu_before = cpu_seconds("self");
    for i in 0..requests() {
        log.record(event(i)).unwrap();
    }
    // Every line is written to the spool by now; the sink has shipped them all once the archive
    // is as long (checked by its size: reading it back would cost this process CPU too).
    let spooled: u64 = std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    while std::fs::metadata(&archive).map_or(0, |m| m.len()) < spooled {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let cpu_us = (cpu_seconds("self") - cpu_before) / requests() as f64 * 1e6;
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    cpu_us
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks what to run
    }
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    let sections = format!(
        "[listen]\naddress = \"127.0.0.1:{{port}}\"\n\n[upstream]\nurl = \"{}\"\n\n\
         [authn]\nissuer = \"{}\"\naudience = [\"urn:invoiceguard:invoicing-api\"]\n\
         mfa_acr = [\"urn:invoiceguard:acr:mfa\"]\n\n\
         [[audit.sinks]]\nname = \"archive\"\nfile = \"archive.log\"\n",
        upstream.url(),
        idp.issuer
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_invoiceguard"));
    let gateway = GatewayProcess::start_with_audit(binary, &sections, None, "stdout = false")
        .await
        .unwrap();
    let token = Arc::new(
        idp.user_token("alice", TokenRequest::default())
            .await
            .unwrap(),
    );
    let (requests_per_s, gateway_cpu_us) = drive(&gateway, token.clone(), READ).await;
    let (writes_per_s, write_cpu_us) = drive(&gateway, token, CREATE).await;
    drop(gateway);
    let audit_cpu_us = audit_path().await;

    let share = audit_cpu_us / gateway_cpu_us;
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    let report = serde_json::json!({
        "requests": requests(),
        "concurrency": CONCURRENCY,
        "gateway_requests_per_s": round(requests_per_s, 0),
        "gateway_cpu_us_per_request": round(gateway_cpu_us, 1),
        "audit_cpu_us_per_event": round(audit_cpu_us, 1),
        "audit_share_of_request_cpu": round(share, 3),
        "requests_per_s_without_audit_estimate": round(requests_per_s / (1.0 - share), 0),
        "goal": "audit share < 0.05",
        "create": {
            "requests_per_s": round(writes_per_s, 0),
            "gateway_cpu_us_per_request": round(write_cpu_us, 1),
            "authorized_event_cpu_us": round(audit_cpu_us, 1),
            "authorized_event_share_of_request_cpu": round(audit_cpu_us / write_cpu_us, 3),
            "audit_share_of_request_cpu": round(2.0 * audit_cpu_us / write_cpu_us, 3),
        },
    });
    if !std::env::args().any(|a| a == "--bench") {
        println!("audit_share: the harness works (run `cargo bench` for figures)");
        return;
    }
    println!(
        "audit share of a request's CPU (full pipeline, hot token, {CONCURRENCY} connections):"
    );
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let out = repo_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("audit.json"), report.to_string()).unwrap();
}
