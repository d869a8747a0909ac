//! The soak (`make soak`; bounded by `SOAK_SECONDS`, loopback only): steady traffic from many
//! identities through the real gateway while the IdP, Redis, the syslog collector and the
//! upstream are each stopped and restarted in turn. At the end: the gateway never crashed and its
//! memory stayed under a bound; every request got a well-formed answer; every request id has
//! exactly one `complete` event in the spool; every spool event reached the collector (duplicates
//! only as at-least-once redelivery); the chain verifies. The summary goes to `target/soak/`.
#![expect(clippy::unwrap_used, reason = "a soak fails at the first broken step")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use invoiceguard_testkit::{
    Collector, GatewayProcess, Idp, Redis, TokenRequest, Upstream, repo_root, send,
};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_invoiceguard");

/// Peak resident memory the gateway may reach (VmHWM).
const MAX_PEAK_RSS_KIB: u64 = 256 * 1024;
/// Growth allowed from the end of the warm-up to the end of the soak.
const MAX_RSS_GROWTH_KIB: u64 = 64 * 1024;
/// Statuses a well-formed answer may have here: success, the gateway's refusals, and the
/// answers of an outage (502, 503, 504).
const STATUSES: [u16; 12] = [200, 201, 400, 401, 403, 404, 409, 422, 429, 502, 503, 504];

/// What one worker saw.
#[derive(Default)]
struct Seen {
    /// Request id → status.
    answers: HashMap<String, u16>,
    /// Answers that were not well-formed, with why.
    broken: Vec<String>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Whether the process is running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

/// One request of the mix, chosen by `n`.
fn next_request(base: &str, n: u64, tokens: &[(String, String)]) -> Request<Full<Bytes>> {
    // Every user meets every kind of request over ten rounds.
    let (user, token) = &tokens[usize::try_from(n + n / 10).unwrap() % tokens.len()];
    let bearer = format!("Bearer {token}");
    let builder = match n % 10 {
        0..=2 => Request::get(format!("{base}/invoices/INV-1")),
        3 => Request::get(format!("{base}/invoices")),
        4 => Request::get(format!("{base}/partners")),
        5 => {
            return Request::post(format!("{base}/invoices"))
                .header("authorization", bearer)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    json!({"partner_id": "P-1", "amount": 100 + n % 900, "currency": "EUR"})
                        .to_string(),
                )))
                .unwrap();
        }
        6 => Request::post(format!("{base}/invoices/INV-1/approve")),
        7 => {
            // A forged token: refused, and counted as a failed login.
            return Request::get(format!("{base}/invoices/INV-1"))
                .header("authorization", format!("Bearer {token}x"))
                .body(Full::default())
                .unwrap();
        }
        8 => {
            return Request::get(format!("{base}/invoices/INV-1"))
                .body(Full::default())
                .unwrap();
        }
        _ => Request::get(format!("{base}/audit-log?who={user}")),
    };
    builder
        .header("authorization", bearer)
        .body(Full::default())
        .unwrap()
}

/// Checks one answer: a request id, a known status, and — for the gateway's own refusals — a
/// problem document carrying that id.
fn check_answer(reply: &invoiceguard_testkit::Reply) -> Result<String, String> {
    let id = reply.header("x-request-id").to_owned();
    if id.is_empty() {
        return Err(format!("status {} without a request id", reply.status));
    }
    if !STATUSES.contains(&reply.status) {
        return Err(format!("{id}: unexpected status {}", reply.status));
    }
    if reply.header("content-type") == "application/problem+json" {
        let problem = reply.json();
        if problem["request_id"] != id.as_str() || problem["status"] != reply.status {
            return Err(format!("{id}: malformed problem {problem}"));
        }
    }
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long-running: `make soak` runs it"]
async fn soak() {
    let seconds = env_u64("SOAK_SECONDS", 120).max(30);
    let workers = env_u64("SOAK_WORKERS", 6);
    let mut idp = Idp::start().await.unwrap();
    let mut redis = Redis::start().await.unwrap();
    let mut collector = Collector::start().await.unwrap();
    let mut upstream = Upstream::start().unwrap();
    let sections = format!(
        "[listen]\naddress = \"127.0.0.1:{{port}}\"\n\n[upstream]\nurl = \"{}\"\ntimeout_ms = 2000\n\n\
         [authn]\nissuer = \"{}\"\naudience = [\"urn:invoiceguard:invoicing-api\"]\nleeway_s = 0\n\
         require_typ = \"at+jwt\"\n\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n\n\
         [limits]\nfailed_auth_per_ip = 1000000\nfailed_auth_per_subject = 1000000\n",
        upstream.url(),
        idp.issuer,
        redis.url()
    );
    let sink = format!(
        "\n[[audit.sinks]]\nname = \"siem\"\nsyslog = \"{}\"\n",
        collector.address()
    );
    let gateway = GatewayProcess::start_with_audit(Path::new(BINARY), &sections, None, &sink)
        .await
        .unwrap();
    let pid = gateway.pid();
    let mut tokens = Vec::new();
    for user in [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "henry",
    ] {
        let token = idp.user_token(user, TokenRequest::default()).await.unwrap();
        tokens.push((user.to_owned(), token));
    }
    let tokens = Arc::new(tokens);

    // Traffic.
    let running = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut traffic = Vec::new();
    for worker in 0..workers {
        let (running, seen, tokens) = (running.clone(), seen.clone(), tokens.clone());
        let base = gateway.url.clone();
        traffic.push(tokio::spawn(async move {
            let mut n = worker * 7919;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let request = next_request(&base, n, &tokens);
                let outcome = match send(request).await {
                    Ok(reply) => check_answer(&reply).map(|id| (id, reply.status)),
                    Err(error) => Err(format!("no answer: {error:#}")),
                };
                let mut seen = seen.lock().unwrap();
                match outcome {
                    Ok((id, status)) => {
                        seen.answers.insert(id, status);
                    }
                    Err(why) => seen.broken.push(why),
                }
            }
        }));
    }

    // Memory, sampled every 500 ms.
    let started = Instant::now();
    let warm_up = Duration::from_secs(seconds / 6);
    let samples = Arc::new(Mutex::new(Vec::<(Duration, u64)>::new()));
    let sampler = {
        let (running, samples) = (running.clone(), samples.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if let Some((rss, _)) = memory(pid) {
                    samples.lock().unwrap().push((started.elapsed(), rss));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // Faults, each in turn: stopped for a twelfth of the soak, then restarted.
    let outage = Duration::from_secs((seconds / 12).max(3));
    let mut faults = Vec::new();
    for (index, part) in ["idp", "redis", "collector", "upstream"].iter().enumerate() {
        let at = Duration::from_secs(seconds * (u64::try_from(index).unwrap() + 1) / 6);
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        let stopped_at = started.elapsed();
        match *part {
            "idp" => idp.stop().unwrap(),
            "redis" => redis.kill().unwrap(),
            "collector" => collector.stop().unwrap(),
            _ => upstream.stop(),
        }
        tokio::time::sleep(outage).await;
        match *part {
            "idp" => idp.restart().await.unwrap(),
            "redis" => redis.restart().await.unwrap(),
            "collector" => collector.restart().await.unwrap(),
            _ => upstream.restart().await.unwrap(),
        }
        faults.push(json!({
            "part": part,
            "stopped_at_s": stopped_at.as_secs_f64(),
            "down_s": outage.as_secs_f64(),
            "gateway_alive": alive(pid),
        }));
        assert!(alive(pid), "the gateway died while {part} was down");
    }
    tokio::time::sleep(Duration::from_secs(seconds).saturating_sub(started.elapsed())).await;
    running.store(false, Ordering::Relaxed);
    for worker in traffic {
        worker.await.unwrap();
    }
    sampler.await.unwrap();
    assert!(alive(pid), "the gateway is not running at the end");
    let (_, peak_rss) = memory(pid).unwrap();

    // Reconcile: the spool has exactly one complete event per answered request id.
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let events = gateway.audit_events();
    let mut complete: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        if event["stage"] == "complete"
            && let Some(id) = event["request_id"].as_str()
        {
            *complete.entry(id).or_default() += 1;
        }
    }
    let missing: Vec<&String> = seen
        .answers
        .keys()
        .filter(|id| complete.get(id.as_str()).copied().unwrap_or(0) == 0)
        .collect();
    let doubled: Vec<&String> = seen
        .answers
        .keys()
        .filter(|id| complete.get(id.as_str()).copied().unwrap_or(0) > 1)
        .collect();
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let contiguous = seqs.iter().zip(1..).all(|(seq, want)| *seq == want);

    // The collector gets every spool event, at least once.
    let spool_seqs: BTreeSet<u64> = seqs.iter().copied().collect();
    let mut delivered: BTreeMap<u64, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        delivered.clear();
        for event in collector.received() {
            if let Some(seq) = event["seq"].as_u64() {
                *delivered.entry(seq).or_default() += 1;
            }
        }
        if spool_seqs.iter().all(|seq| delivered.contains_key(seq)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let undelivered = spool_seqs
        .iter()
        .filter(|seq| !delivered.contains_key(seq))
        .count();
    let redelivered: usize = delivered.values().map(|n| n - 1).sum();

    // The chain verifies.
    let verify = std::process::Command::new(BINARY)
        .args(["audit", "verify"])
        .arg(&gateway.spool)
        .output()
        .unwrap();

    // Memory: the peak, and the growth from the end of the warm-up to the end.
    let samples = samples.lock().unwrap().clone();
    let after_warm_up = samples
        .iter()
        .find(|(at, _)| *at >= warm_up)
        .map_or(0, |(_, rss)| *rss);
    let at_end = samples.last().map_or(0, |(_, rss)| *rss);
    let growth = at_end.saturating_sub(after_warm_up);

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for status in seen.answers.values() {
        *by_status.entry(*status).or_default() += 1;
    }
    let summary = json!({
        "seconds": seconds,
        "workers": workers,
        "requests": seen.answers.len() + seen.broken.len(),
        "answers_by_status": by_status,
        "broken_answers": seen.broken.len(),
        "faults": faults,
        "audit": {
            "events": events.len(),
            "request_ids_without_event": missing.len(),
            "request_ids_with_several_events": doubled.len(),
            "seq_contiguous": contiguous,
            "delivered_to_collector": delivered.len(),
            "undelivered": undelivered,
            "redelivered_duplicates": redelivered,
            "chain_verifies": verify.status.success(),
        },
        "memory_kib": {
            "peak": peak_rss,
            "after_warm_up": after_warm_up,
            "at_end": at_end,
            "bound_peak": MAX_PEAK_RSS_KIB,
            "bound_growth": MAX_RSS_GROWTH_KIB,
        },
    });
    write_summary(&summary);
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());

    assert!(
        seen.broken.is_empty(),
        "answers that were not well-formed: {:?}",
        &seen.broken[..seen.broken.len().min(20)]
    );
    assert!(
        missing.is_empty(),
        "request ids without an event: {missing:?}"
    );
    assert!(
        doubled.is_empty(),
        "request ids with several complete events: {doubled:?}"
    );
    assert!(contiguous, "the spool's seq has gaps");
    assert_eq!(undelivered, 0, "events never reached the collector");
    assert!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(peak_rss <= MAX_PEAK_RSS_KIB, "peak memory {peak_rss} KiB");
    assert!(growth <= MAX_RSS_GROWTH_KIB, "memory grew by {growth} KiB");
    for status in [200, 401, 502, 503] {
        assert!(
            by_status.contains_key(&status),
            "no {status} answer: the mix or the faults did not happen"
        );
    }
}

/// `target/soak/summary.json` and `summary.md`.
fn write_summary(summary: &Value) {
    let dir = repo_root().join("target/soak");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(summary).unwrap(),
    )
    .unwrap();
    let audit = &summary["audit"];
    let memory = &summary["memory_kib"];
    let mut text = format!(
        "# Soak summary\n\n{} s, {} workers: **{} requests**, {} answers not well-formed.\n\n\
         | status | answers |\n|---|---|\n",
        summary["seconds"], summary["workers"], summary["requests"], summary["broken_answers"]
    );
    if let Some(statuses) = summary["answers_by_status"].as_object() {
        for (status, count) in statuses {
            text.push_str(&format!("| {status} | {count} |\n"));
        }
    }
    text.push_str("\n| fault | stopped at (s) | down (s) | gateway alive |\n|---|---|---|---|\n");
    for fault in summary["faults"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "| {} | {:.1} | {:.1} | {} |\n",
            fault["part"].as_str().unwrap_or_default(),
            fault["stopped_at_s"].as_f64().unwrap_or_default(),
            fault["down_s"].as_f64().unwrap_or_default(),
            fault["gateway_alive"]
        ));
    }
    text.push_str(&format!(
        "\nAudit: {} events; request ids without an event: {}; with several: {}; seq contiguous: \
         {}; delivered to the collector: {} (undelivered {}, redelivered duplicates {}); chain \
         verifies: {}.\n\nMemory (KiB): peak {} (bound {}), after warm-up {}, at the end {} \
         (growth bound {}).\n",
        audit["events"],
        audit["request_ids_without_event"],
        audit["request_ids_with_several_events"],
        audit["seq_contiguous"],
        audit["delivered_to_collector"],
        audit["undelivered"],
        audit["redelivered_duplicates"],
        audit["chain_verifies"],
        memory["peak"],
        memory["bound_peak"],
        memory["after_warm_up"],
        memory["at_end"],
        memory["bound_growth"],
    ));
    std::fs::write(dir.join("summary.md"), text).unwrap();
}
