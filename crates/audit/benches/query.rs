//! `audit query` over a large generated trail: `QUERY_BENCH_EVENTS` events (2,000,000 by default,
//! about 1.7 GB) written once as spool segments under `target/bench/query-trail`, then scanned
//! with a selective filter (an actor, an invoice: most lines skipped by the substring search) and
//! a broad one (every line parsed). Prints events per second and writes `target/bench/query.md`.
#![expect(clippy::unwrap_used, reason = "a bench fails loudly at setup")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use invoiceguard_audit::query::{Filter, scan};

const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// One event as the gateway writes it: ten people and two integrations, a thousand invoices,
/// one event every 50 ms from 2026-01-01.
fn event(i: u64) -> String {
    const ACTORS: [(&str, &str, &str); 12] = [
        ("alice", "user", "invoice:create"),
        ("bob", "user", "invoice:approve"),
        ("carol", "user", "export:create"),
        ("dave", "user", "settings:update"),
        ("erin", "user", "audit:read"),
        ("frank", "user", "invoice:approve"),
        ("grace", "user", "invoice:submit"),
        ("henry", "user", "invoice:read"),
        ("ivan", "user", "invoice:read"),
        ("judy", "user", "invoice:list"),
        ("erp-sync", "service_account", "invoice:read"),
        ("bank-feed", "service_account", "partner:read"),
    ];
    let (actor, kind, action) = ACTORS[(i % 12) as usize];
    let millis = i * 50;
    let (seconds, ms) = (millis / 1000, millis % 1000);
    let (day, rest) = (seconds / 86_400, seconds % 86_400);
    let time = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}000000Z",
        1 + (day / 28).min(11),
        1 + day % 28,
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    );
    let deny = i.is_multiple_of(17);
    serde_json::json!({
        "event_id": format!("9b1c6a1e-0000-4000-8000-{i:012}"), "seq": i + 1, "stage": "complete",
        "time": time, "instance": "gw-1", "request_id": format!("c05112ce-0000-4000-8000-{i:012}"),
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "actor": {"type": kind, "id": actor, "roles": ["invoicing"], "scopes": ["openid"],
            "client_id": "invoicing-web", "auth_method": "bearer_jwt", "amr": ["pwd", "otp"],
            "acr": null, "mfa": true},
        "source": {"ip": "10.20.30.40", "user_agent": "Mozilla/5.0"},
        "request": {"method": "POST", "path": format!("/invoices/INV-{}", i % 1000),
            "route": "/invoices/{id}", "protocol": "HTTP/1.1"},
        "action": action, "resource": {"type": "Invoice", "id": format!("INV-{}", i % 1000)},
        "break_glass_reason": null,
        "decision": {"effect": if deny { "deny" } else { "allow" }, "reason": "policy",
            "policies": ["role.invoicing"], "policy_version": "ae2b2b38c9c0", "detail": null,
            "shadow": null},
        "outcome": {"status": if deny { 403 } else { 200 }, "upstream_status": 200,
            "duration_ms": 1.234, "response_bytes": 512, "error_side": null, "export_rows": null},
        "severity": if deny { "warning" } else { "info" }, "category": "authorization",
        "prev_hash": "5f1d7a2c9e0b4f3a8d6c1e2b7a9f0d3c4b5a6e7f8091a2b3c4d5e6f708192a3b",
    })
    .to_string()
}

/// The trail, written once for a given size.
fn trail(dir: &Path, events: u64) -> u64 {
    let marker = dir.join("events");
    if std::fs::read_to_string(&marker)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        == Some(events)
    {
        return dir_bytes(dir);
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut written = SEGMENT_BYTES;
    let mut file = None;
    for i in 0..events {
        if written >= SEGMENT_BYTES {
            let path = dir.join(format!("{:020}.jsonl", i + 1));
            file = Some(std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(path).unwrap(),
            ));
            written = 0;
        }
        let line = event(i);
        let out = file.as_mut().unwrap();
        out.write_all(line.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
        written += line.len() as u64 + 1;
    }
    drop(file);
    std::fs::write(&marker, events.to_string()).unwrap();
    dir_bytes(dir)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events: u64 = std::env::var("QUERY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let dir = root.join("query-trail");
    let started = Instant::now();
    let bytes = trail(&dir, events);
    eprintln!(
        "trail: {events} events, {} MB ({:.1} s to make or find)",
        bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    let cases = [
        (
            "--actor carol (1 in 12)",
            Filter {
                actor: Some("carol".into()),
                ..Filter::default()
            },
        ),
        (
            "--invoice INV-42 (1 in 1,000)",
            Filter {
                resource_type: Some("Invoice".into()),
                resource_id: Some("INV-42".into()),
                ..Filter::default()
            },
        ),
        (
            "--decision deny (every line parsed)",
            Filter {
                decision: Some("deny".into()),
                ..Filter::default()
            },
        ),
    ];
    let mut report = format!(
        "# audit query\n\n{events} events, {} MB in {} segments (one spool folder); after the first case it is read from the page cache when it fits in memory, from the disk when it does not.\n\n| query | matched | seconds | events/s | MB/s |\n|---|---|---|---|---|\n",
        bytes / 1_000_000,
        invoiceguard_audit::segments(&dir).unwrap().len()
    );
    for (name, filter) in cases {
        let started = Instant::now();
        let mut matched = 0u64;
        let (read, _) = scan(std::slice::from_ref(&dir), &filter, |_, _| matched += 1).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let row = format!(
            "| {name} | {matched} | {seconds:.2} | {:.0} | {:.0} |\n",
            read as f64 / seconds,
            bytes as f64 / 1e6 / seconds
        );
        eprint!("{row}");
        report.push_str(&row);
    }
    std::fs::write(root.join("query.md"), report).unwrap();
}
