//! The audit stream end to end: every event reaches a real syslog collector (rsyslogd), in order,
//! and none is lost when the collector goes away for a while or the gateway is killed.

use std::collections::BTreeSet;

use super::*;
use invoiceguard_testkit::Collector;

/// A sink section: the events shipped to the collector at `address` (`[[audit.sinks]]` may follow
/// the `[audit]` table the testkit writes).
fn sink(name: &str, address: &str, more: &str) -> String {
    format!(
        "
[[audit.sinks]]
name = \"{name}\"
syslog = \"{address}\"
{more}
"
    )
}

/// Waits until the collector holds an event for every request id of the gateway's audit file.
async fn all_delivered(
    gateway: &GatewayProcess,
    collector: &Collector,
) -> (BTreeSet<String>, Vec<Value>) {
    let expected: BTreeSet<String> = gateway
        .audit_events()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .collect();
    let mut received = Vec::new();
    for _ in 0..100 {
        received = collector.received();
        let got: BTreeSet<String> = received
            .iter()
            .filter_map(|e| e["request_id"].as_str().map(str::to_owned))
            .collect();
        if expected.is_subset(&got) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (expected, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_collector_in_order() {
    let collector = Collector::start().await.unwrap();
    let world = World::start_with(&sink("siem", &collector.address(), ""), None, "").await;
    let (gateway, alice) = (&world.gateway, world.token("alice").await);
    for i in 0..30 {
        let path = if i % 3 == 0 {
            "/settings"
        } else {
            "/invoices/INV-1"
        };
        get(&format!("{}{path}", gateway.url), Some(&alice))
            .await
            .unwrap();
    }
    get(&format!("{}/invoices", gateway.url), None)
        .await
        .unwrap();
    let (expected, received) = all_delivered(gateway, &collector).await;
    // 31 requests, and the policy set loaded at start.
    assert_eq!(expected.len(), 32);
    let seqs: Vec<u64> = received
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=32).collect::<Vec<_>>(),
        "every event once, in order, parsable"
    );
    assert!(
        received
            .iter()
            .all(|e| e["prev_hash"].as_str().is_some_and(|h| h.len() == 64))
    );
    let shipped = serde_json::to_string(&received).unwrap();
    assert!(
        !shipped.contains(&alice) && !shipped.contains("eyJ"),
        "no token ever reaches the collector"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_outage_and_a_killed_gateway_lose_no_event() {
    let mut collector = Collector::start().await.unwrap();
    let mut world = World::start_with(&sink("siem", &collector.address(), ""), None, "").await;
    let alice = world.token("alice").await;
    let gateway = &mut world.gateway;
    let traffic = |gateway_url: String, alice: String, count: usize| async move {
        for _ in 0..count {
            let reply = get(&format!("{gateway_url}/invoices/INV-1"), Some(&alice))
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
        }
    };

    traffic(gateway.url.clone(), alice.clone(), 20).await;
    // The collector goes away while requests keep coming, then returns.
    collector.stop().unwrap();
    traffic(gateway.url.clone(), alice.clone(), 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    collector.restart().await.unwrap();
    traffic(gateway.url.clone(), alice.clone(), 20).await;
    // The gateway is killed mid-stream (no drain, no flush) and started again.
    let burst = tokio::spawn(traffic(gateway.url.clone(), alice.clone(), 30));
    tokio::time::sleep(Duration::from_millis(100)).await;
    gateway.kill_and_restart(Path::new(BINARY)).await.unwrap();
    let _ = burst.await; // requests cut by the kill fail; those answered were audited
    traffic(gateway.url.clone(), alice.clone(), 20).await;

    let (expected, received) = all_delivered(gateway, &collector).await;
    let got: BTreeSet<String> = received
        .iter()
        .filter_map(|e| e["request_id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never arrived: {missing:?}",
        missing.len(),
        expected.len()
    );
    assert!(expected.len() >= 100, "{} requests audited", expected.len());
    // At least once: duplicates are possible around an outage, never losses; the file verifies.
    let verified = std::process::Command::new(BINARY)
        .args(["audit", "verify"])
        .arg(&gateway.spool)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_request_is_forwarded_only_once_its_event_is_on_disk() {
    let world = World::start().await;
    let dave = world.token("dave").await;
    let body = Some(json!({"company": "Example Kft.", "default_currency": "EUR"}));
    let reply = send(request("PUT", &world.url("/settings"), Some(&dave), body))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let id = reply.header("x-request-id");
    let events: Vec<Value> = world
        .gateway
        .audit_events()
        .into_iter()
        .filter(|e| e["request_id"] == id)
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (
            events[0]["stage"].as_str(),
            events[0]["outcome"]["status"].as_u64()
        ),
        (Some("authorized"), Some(0))
    );
    assert_eq!(events[0]["decision"]["effect"], "allow");
    assert_eq!(
        (
            events[1]["stage"].as_str(),
            events[1]["outcome"]["status"].as_u64()
        ),
        (Some("complete"), Some(200))
    );
    // A read is not sensitive: one event.
    let read = get(
        &world.url("/invoices/INV-1"),
        Some(&world.token("alice").await),
    )
    .await
    .unwrap();
    let read_id = read.header("x-request-id");
    assert_eq!(
        world
            .gateway
            .audit_events()
            .iter()
            .filter(|e| e["request_id"] == read_id)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_spool_cannot_be_written_requests_are_refused() {
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    // The spool's open segment is /dev/full: every write fails with "no space left on device".
    let spool = TempDir::new("full-spool").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(spool.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::os::unix::fs::symlink("/dev/full", spool.path().join("00000000000000000001.jsonl"))
        .unwrap();
    let gateway = GatewayProcess::start_with_audit(
        Path::new(BINARY),
        &sections(&idp.issuer, &upstream.url(), ""),
        Some(spool.path()),
        "",
    )
    .await
    .unwrap();
    let dave = idp
        .user_token("dave", TokenRequest::default())
        .await
        .unwrap();
    let refused = send(request(
        "PUT",
        &format!("{}/settings", gateway.url),
        Some(&dave),
        Some(json!({"company": "X"})),
    ))
    .await
    .unwrap();
    let problem = assert_problem(&refused, 503);
    assert_eq!(
        problem["type"],
        "urn:invoiceguard:problem:audit-unavailable"
    );
    // Reads too, now that the spool is known not to take events: nothing happens unrecorded.
    let alice = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    let read = get(&format!("{}/invoices/INV-1", gateway.url), Some(&alice))
        .await
        .unwrap();
    assert_problem(&read, 503);
    assert!(
        upstream.journal().await.unwrap().is_empty(),
        "no unrecordable request reached the upstream"
    );
    let ready = get(&format!("{}/readyz", gateway.admin_url), None)
        .await
        .unwrap();
    assert_eq!(ready.status, 503, "{:?}", ready.body);
    assert_eq!(ready.json()["audit"]["writable"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_collector_over_tls() {
    let dir = TempDir::new("syslog-tls").unwrap();
    let (ca, cert, key) = invoiceguard_testkit::certificates(dir.path()).unwrap();
    let collector = Collector::start_tls(&ca, &cert, &key).await.unwrap();
    let tls = format!("tls = {{ ca_file = {ca:?}, server_name = \"localhost\" }}");
    let address = format!("127.0.0.1:{}", collector.port);
    let world = World::start_with(&sink("siem-tls", &address, &tls), None, "").await;
    let (gateway, alice) = (&world.gateway, world.token("alice").await);
    for _ in 0..10 {
        get(&format!("{}/invoices/INV-1", gateway.url), Some(&alice))
            .await
            .unwrap();
    }
    let (expected, received) = all_delivered(gateway, &collector).await;
    // The policy set loaded at start, then ten requests.
    assert_eq!(expected.len(), 11);
    let seqs: Vec<u64> = received.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>(), "{received:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocsf_sink_receives_api_activity_and_authentication_events() {
    let collector = Collector::start().await.unwrap();
    let world = World::start_with(
        &sink("ocsf", &collector.address(), "format = \"ocsf\""),
        None,
        "",
    )
    .await;
    let (gateway, alice) = (&world.gateway, world.token("alice").await);
    let allowed = get(&format!("{}/invoices/INV-1", gateway.url), Some(&alice))
        .await
        .unwrap();
    let refused = get(
        &format!("{}/invoices/INV-1", gateway.url),
        Some("not-a-token"),
    )
    .await
    .unwrap();
    let mut received = Vec::new();
    for _ in 0..100 {
        received = collector.received();
        if received.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_request = |id: &str| {
        received
            .iter()
            .find(|e| e["metadata"]["correlation_uid"] == id)
            .cloned()
            .unwrap()
    };
    let activity = by_request(allowed.header("x-request-id"));
    assert_eq!(
        (
            activity["class_uid"].as_u64(),
            activity["activity_id"].as_u64()
        ),
        (Some(6003), Some(2))
    );
    assert_eq!(activity["actor"]["user"]["uid"], "alice");
    assert_eq!(activity["api"]["operation"], "invoice:read");
    assert_eq!(activity["status"], "Success");
    let login = by_request(refused.header("x-request-id"));
    assert_eq!(login["class_uid"], 3002);
    assert_eq!(
        (login["status"].as_str(), login["status_detail"].as_str()),
        (Some("Failure"), Some("malformed_token"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_their_instance_trace_category_severity_and_size() {
    let world = World::start_audit("", "instance = \"gw-eu-1\"").await;
    let (alice, dave) = (world.token("alice").await, world.token("dave").await);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traced = send(
        Request::get(world.url("/invoices/INV-1"))
            .header("authorization", format!("Bearer {alice}"))
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .body(Full::default())
            .unwrap(),
    )
    .await
    .unwrap();
    let event = world.gateway.audit_event(traced.header("x-request-id"));
    assert_eq!(event["instance"], "gw-eu-1");
    assert_eq!(event["trace_id"], trace);
    assert_eq!(
        (event["category"].as_str(), event["severity"].as_str()),
        (Some("authorization"), Some("info"))
    );
    assert_eq!(event["outcome"]["response_bytes"], traced.body.len() as u64);

    let bad_trace = send(
        Request::get(world.url("/invoices/INV-1"))
            .header("authorization", format!("Bearer {alice}"))
            .header(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )
            .body(Full::default())
            .unwrap(),
    )
    .await
    .unwrap();
    // An invalid traceparent is ignored: the gateway starts a trace of its own.
    let started = world.gateway.audit_event(bad_trace.header("x-request-id"))["trace_id"].clone();
    let started = started.as_str().unwrap();
    assert!(started.len() == 32 && started != "0".repeat(32) && started != trace);

    // A refused login and an administration action are flagged high.
    let refused = get(&world.url("/invoices"), Some("not-a-token"))
        .await
        .unwrap();
    let event = world.gateway.audit_event(refused.header("x-request-id"));
    assert_eq!(
        (event["category"].as_str(), event["severity"].as_str()),
        (Some("authentication"), Some("high"))
    );
    let settings = send(request(
        "PUT",
        &world.url("/settings"),
        Some(&dave),
        Some(json!({"company": "X"})),
    ))
    .await
    .unwrap();
    assert_eq!(settings.status, 200);
    let event = world.gateway.audit_event(settings.header("x-request-id"));
    assert_eq!(
        (event["category"].as_str(), event["severity"].as_str()),
        (Some("administration"), Some("high"))
    );
    // An integration account's call.
    let erp = world
        .idp
        .service_token("erp-sync", "erp-sync-secret", "invoices:read")
        .await
        .unwrap();
    let listed = get(&world.url("/invoices"), Some(&erp)).await.unwrap();
    assert_eq!(listed.status, 200);
    assert_eq!(
        world.gateway.audit_event(listed.header("x-request-id"))["category"],
        "integration"
    );
}

/// Whether `message` (a syslog message as received) has a strict RFC 5424 header (section 6):
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`, with at most six
/// fractional digits in the time (6.2.3) and printable ASCII fields of the allowed lengths.
/// Returns the PRI and the MSG.
fn rfc5424(message: &str) -> Option<(u16, &str)> {
    let header = regex::Regex::new(
        r"^<(\d{1,3})>1 (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})|-) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) (-|\[.*?\]) ",
    )
    .unwrap();
    let found = header.captures(message)?;
    let pri: u16 = found[1].parse().ok()?;
    (pri <= 191).then(|| (pri, &message[found[0].len()..]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_severities_pass_rsyslogs_warning_filter_and_headers_are_strict_rfc_5424() {
    let collector = Collector::start().await.unwrap();
    let world = World::start_with(&sink("siem", &collector.address(), ""), None, "").await;
    let (alice, dave) = (world.token("alice").await, world.token("dave").await);
    // info (an allowed read), warning (a refused read), high (a refused login, an allowed and
    // a refused administration request), critical (a break-glass request).
    get(&world.url("/invoices/INV-1"), Some(&alice))
        .await
        .unwrap();
    get(&world.url("/audit-log"), Some(&alice)).await.unwrap();
    get(&world.url("/invoices/INV-1"), Some("not.a.jwt"))
        .await
        .unwrap();
    get(&world.url("/settings"), Some(&dave)).await.unwrap();
    get(&world.url("/settings"), Some(&alice)).await.unwrap();
    let zed = world.token("zed").await;
    let break_glass = Request::get(world.url("/invoices/INV-1"))
        .header("authorization", format!("Bearer {zed}"))
        .header("x-break-glass-reason", "INC-7 outage")
        .body(Full::default())
        .unwrap();
    send(break_glass).await.unwrap();
    let (expected, received) = all_delivered(&world.gateway, &collector).await;
    // Six requests, and the policy set loaded at start.
    assert_eq!(expected.len(), 7, "{received:?}");
    let severities: BTreeSet<&str> = received
        .iter()
        .filter_map(|e| e["severity"].as_str())
        .collect();
    assert_eq!(
        severities,
        BTreeSet::from(["info", "warning", "high", "critical"]),
        "every kind under test was produced"
    );
    // rsyslog's own `*.warning` selector keeps everything but the allowed read.
    let filtered: BTreeSet<String> = collector
        .warning_or_worse()
        .iter()
        .filter_map(|e| e["request_id"].as_str().map(str::to_owned))
        .collect();
    for event in &received {
        let id = event["request_id"].as_str().unwrap();
        let kept = filtered.contains(id);
        assert_eq!(
            kept,
            event["severity"] != "info",
            "severity {} through `*.warning`: {kept}",
            event["severity"]
        );
    }
    // Every message as it arrived has a strict RFC 5424 header, its PRI from the severity.
    let raw = collector.raw_messages();
    assert_eq!(raw.len(), 7);
    for message in &raw {
        let parsed = rfc5424(message);
        assert!(parsed.is_some(), "not RFC 5424: {message}");
        let (pri, msg) = parsed.unwrap();
        let event: Value = serde_json::from_str(msg).unwrap();
        let severity = match event["severity"].as_str().unwrap() {
            "critical" => 2,
            "high" | "error" => 3,
            "warning" => 4,
            _ => 6,
        };
        assert_eq!(pri, 13 * 8 + severity, "{message}");
    }
}
