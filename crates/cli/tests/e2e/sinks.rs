//! The audit spool and its sinks end to end: HTTP batches with a secret header and retries, a
//! rotating file sink, segments removed once delivered, a full spool refusing requests, the
//! metrics that show it, and redaction: no token, secret or masked value reaches any output.

use std::collections::BTreeSet;

use super::*;
use invoiceguard_testkit::{Collector, HttpCollector};

/// The value of one sample of the gateway's `/metrics` (0 when absent).
pub(crate) async fn metric(gateway: &GatewayProcess, sample: &str) -> f64 {
    let text = get(&format!("{}/metrics", gateway.admin_url), None)
        .await
        .unwrap()
        .body;
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The request ids of a gateway's `complete` events.
fn request_ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e["stage"] == "complete" && e["decision"]["reason"] != "system")
        .filter_map(|e| e["request_id"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (up to 10 s) until `delivered` holds every request id the gateway audited.
async fn wait_delivered(gateway: &GatewayProcess, delivered: impl Fn() -> Vec<Value>) -> bool {
    for _ in 0..100 {
        let expected = request_ids(&gateway.audit_events());
        if expected.is_subset(&request_ids(&delivered())) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_sink_gets_ndjson_batches_with_its_secret_header_and_retries_until_accepted() {
    let collector = HttpCollector::start().unwrap();
    let secrets = TempDir::new("hec").unwrap();
    let secret_file = secrets.path().join("hec.secret");
    std::fs::write(&secret_file, "Splunk 7c3a-hec-token\n").unwrap();
    let world = World::start_with(
        &format!(
            "[[audit.sinks]]\nname = \"hec\"\nhttp = \"{}\"\nauth_header_file = {secret_file:?}\n",
            collector.url()
        ),
        None,
        "",
    )
    .await;
    let alice = world.token("alice").await;
    let read = |n: usize| {
        let (url, alice) = (world.url("/invoices/INV-1"), alice.clone());
        async move {
            for _ in 0..n {
                assert_eq!(get(&url, Some(&alice)).await.unwrap().status, 200);
            }
        }
    };
    read(10).await;
    assert!(wait_delivered(&world.gateway, || collector.events()).await);
    // The collector fails for a while: requests go on, events wait in the spool — more than
    // one HTTP batch of them (about 1 KiB each).
    collector.set_failing(true);
    tokio::join!(read(80), read(80), read(80), read(80));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(collector.refused() > 0, "the sink kept trying");
    let lag = metric(
        &world.gateway,
        "invoiceguard_audit_sink_lag_events{sink=\"hec\"}",
    )
    .await;
    assert!(lag >= 320.0, "lag {lag}");
    collector.set_failing(false);
    read(10).await;
    assert!(
        wait_delivered(&world.gateway, || collector.events()).await,
        "every event arrived after the outage"
    );
    // NDJSON in order, every batch with the secret header.
    let events = collector.events();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(
        collector
            .authorizations()
            .iter()
            .all(|a| a == "Splunk 7c3a-hec-token")
    );
    // The backlog went out in batches as large as an HTTP sink sends, and no larger (under
    // collectors' request limits, e.g. Splunk HEC's 1,000,000 bytes).
    let largest = collector.raw_bodies().iter().map(Vec::len).max().unwrap();
    assert!(
        (200 * 1024..=256 * 1024).contains(&largest),
        "largest batch {largest} bytes"
    );
    let g = &world.gateway;
    // The collector holds the last batch before the sink reads its answer and counts it.
    let mut shipped = 0.0;
    for _ in 0..50 {
        shipped = metric(g, "invoiceguard_audit_events_shipped_total{sink=\"hec\"}").await;
        if shipped >= 340.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shipped >= 340.0, "shipped {shipped}");
    assert!(metric(g, "invoiceguard_audit_sink_retries_total{sink=\"hec\"}").await >= 1.0);
    assert!(metric(g, "invoiceguard_audit_events_written_total").await >= 340.0);
    assert!(metric(g, "invoiceguard_audit_spool_bytes").await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_segments_are_removed_and_the_file_sink_rotates() {
    let world = World::start_audit(
        "[[audit.sinks]]\nname = \"archive\"\nfile = \"archive/audit.log\"\nmax_file_bytes = 16384\nkeep_files = 50\n",
        "segment_bytes = 8192\nmax_bytes = 49152\n",
    )
    .await;
    // The sink's folder did not exist: the gateway made it, for its own user only.
    let archive = std::fs::metadata(world.gateway.dir().join("archive")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(archive.permissions().mode() & 0o777, 0o700);
    let alice = world.token("alice").await;
    // A pace the sink keeps up with (the cap is tiny): bursts of 10, a pause after each.
    for i in 0..120 {
        let reply = get(&world.url("/invoices/INV-1"), Some(&alice))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    let archived_file = world.gateway.dir().join("archive/audit.log");
    assert!(
        wait_delivered(&world.gateway, || {
            std::fs::read_dir(world.gateway.dir().join("archive"))
                .unwrap()
                .flat_map(|e| {
                    std::fs::read_to_string(e.unwrap().path())
                        .unwrap()
                        .lines()
                        .map(|l| serde_json::from_str(l).unwrap())
                        .collect::<Vec<Value>>()
                })
                .collect()
        })
        .await,
        "{archived_file:?} got every event"
    );
    // The archive holds every event, across its rotated files; the chain verifies across them.
    let archive = world.gateway.dir().join("archive");
    let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let n = p
                .extension()
                .and_then(|x| x.to_str()?.parse().ok())
                .unwrap_or(0);
            (n, p)
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0)); // oldest (highest number) first
    assert!(files.len() >= 3, "rotated: {files:?}");
    let archived = || {
        files
            .iter()
            .flat_map(|(_, p)| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<Value>>()
            })
            .collect::<Vec<Value>>()
    };
    let all_ids: BTreeSet<String> = request_ids(&archived());
    assert!(all_ids.len() >= 120, "{} archived", all_ids.len());
    let verified = std::process::Command::new(BINARY)
        .args(["audit", "verify"])
        .args(files.iter().map(|(_, p)| p))
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    // The spool kept to its cap by removing what the archive had.
    let segments = world.gateway.segments();
    let spool_bytes: u64 = segments
        .iter()
        .map(|s| std::fs::metadata(s).unwrap().len())
        .sum();
    assert!(spool_bytes <= 49152, "{spool_bytes} bytes in {segments:?}");
    assert!(
        !segments[0].ends_with("00000000000000000001.jsonl"),
        "the first segment was delivered and removed"
    );
    let verified = std::process::Command::new(BINARY)
        .args(["audit", "verify"])
        .arg(&world.gateway.spool)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{out}");
    assert!(
        out.contains("earlier segments were delivered and removed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_requests_rather_than_lose_their_events() {
    // No sink: the spool is the only copy and nothing may be removed.
    let world = World::start_audit("", "segment_bytes = 4096\nmax_bytes = 8192\n").await;
    let alice = world.token("alice").await;
    let mut served = 0;
    let mut refused = None;
    for _ in 0..100 {
        let reply = get(&world.url("/invoices/INV-1"), Some(&alice))
            .await
            .unwrap();
        if reply.status == 200 {
            served += 1;
        } else {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the spool filled up");
    let problem = assert_problem(&refused, 503);
    assert_eq!(
        problem["type"],
        "urn:invoiceguard:problem:audit-unavailable"
    );
    // Every served request has its event; none was served without one.
    let journal = world.upstream.journal().await.unwrap();
    assert_eq!(journal.len(), served);
    assert_eq!(request_ids(&world.gateway.audit_events()).len(), served);
    let again = get(&world.url("/invoices/INV-1"), Some(&alice))
        .await
        .unwrap();
    assert_problem(&again, 503);
    assert_eq!(world.upstream.journal().await.unwrap().len(), served);
    let ready = get(&format!("{}/readyz", world.gateway.admin_url), None)
        .await
        .unwrap();
    assert_eq!(ready.status, 503);
    assert!(metric(&world.gateway, "invoiceguard_audit_write_failures_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_secret_or_masked_value_reaches_any_output() {
    let syslog = Collector::start().await.unwrap();
    let http = HttpCollector::start().unwrap();
    let secrets = TempDir::new("redaction").unwrap();
    let (hec_secret, hmac_secret, api_key) = (
        "Splunk hec-secret-91ab",
        "hmac-secret-5f2e-0123456789",
        "ik_live_9d7a21c4e8f04b1fa3c6",
    );
    std::fs::write(secrets.path().join("hec.secret"), hec_secret).unwrap();
    std::fs::write(secrets.path().join("hmac.key"), hmac_secret).unwrap();
    let extra = format!(
        "\n[[authn.api_keys]]\naccount = \"legacy-batch\"\nscopes = [\"invoices:read\"]\nsha256 = [\"{}\"]\n\
         [[audit.sinks]]\nname = \"syslog\"\nsyslog = \"{}\"\nformat = \"ocsf\"\n\
         [[audit.sinks]]\nname = \"hec\"\nhttp = \"{}\"\nauth_header_file = {:?}\n\
         [[audit.sinks]]\nname = \"archive\"\nfile = \"archive.log\"\n",
        super::identity::api_key_hash(api_key),
        syslog.address(),
        http.url(),
        secrets.path().join("hec.secret"),
    );
    let world = World::start_audit(
        &extra,
        &format!("hmac_key_file = {:?}\n", secrets.path().join("hmac.key")),
    )
    .await;
    let alice = world.token("alice").await;
    let (iban, vat) = ("DE89370400440532013000", "DE123456789");
    // A bank account number in the path, a token in the user agent, a tax id and an account
    // number in a break-glass reason, an API key, and a bad token.
    let mut calls = vec![
        Request::get(world.url(&format!("/partners/{iban}")))
            .header("authorization", format!("Bearer {alice}"))
            .header("user-agent", format!("batch-tool/1.0 (token {alice})"))
            .body(Full::default())
            .unwrap(),
        Request::get(world.url("/invoices/INV-1"))
            .header("authorization", format!("Bearer {alice}"))
            .header("x-break-glass-reason", format!("pay {vat} to {iban} today"))
            .body(Full::default())
            .unwrap(),
        Request::get(world.url("/invoices"))
            .header("x-api-key", api_key)
            .body(Full::default())
            .unwrap(),
    ];
    calls.push(
        Request::get(world.url(&format!("/invoices?iban={iban}")))
            .header("authorization", format!("Bearer {alice}x"))
            .body(Full::default())
            .unwrap(),
    );
    for call in calls {
        send(call).await.unwrap();
    }
    let g = &world.gateway;
    assert!(wait_delivered(g, || http.events()).await);
    let ocsf_ids = || {
        syslog
            .received()
            .iter()
            .map(|e| json!({"stage": "complete", "request_id": e["metadata"]["correlation_uid"]}))
            .collect()
    };
    assert!(wait_delivered(g, ocsf_ids).await);
    let archive = || {
        std::fs::read_to_string(g.dir().join("archive.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect::<Vec<Value>>()
    };
    assert!(wait_delivered(g, archive).await);
    let outputs = [
        ("spool", g.audit_text()),
        ("stdout", std::fs::read_to_string(&g.stdout_file).unwrap()),
        ("syslog", serde_json::to_string(&syslog.received()).unwrap()),
        ("http", http.bodies().concat()),
        (
            "file",
            std::fs::read_to_string(g.dir().join("archive.log")).unwrap(),
        ),
    ];
    for (name, text) in &outputs {
        assert!(text.len() > 500, "{name} holds the events");
        for secret in [
            alice.as_str(),
            api_key,
            iban,
            vat,
            hec_secret,
            hmac_secret,
            "eyJ",
        ] {
            assert!(
                !text.contains(secret),
                "`{secret}` reached the {name} output: {text}"
            );
        }
    }
    // What was masked is still recognisable by its last characters; the events still follow
    // their schema.
    let events = g.audit_events();
    let schema = super::schema::audit_event_schema();
    for event in &events {
        let problems = super::schema::violations(&schema, event);
        assert!(problems.is_empty(), "{problems:?} in {event}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["request"]["path"] == format!("/partners/{}3000", "*".repeat(18)))
    );
    assert!(events.iter().any(|e| {
        e["break_glass_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("pay *******6789 to "))
    }));
}
