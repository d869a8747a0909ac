//! Watermarked exports through the real IdP and the example API: every export gets an id, a CSV
//! its trailing line and a JSON object its member, the SHA-256 of the bytes delivered goes into
//! the export's `delivered` event, and `invoiceguard export trace` finds a leaked file's export
//! (and so the person) by its watermark — or, for a copy whose watermark was removed and nothing
//! else changed, by its hash.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{BINARY, World, request, run, send};

/// The `delivered` event of an export, once its stream has ended.
async fn delivered(world: &World, export_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = world.gateway.audit_events().into_iter().find(|e| {
            e["stage"] == "delivered" && e["outcome"]["export_delivery"]["id"] == export_id
        });
        if let Some(event) = found {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no delivered event for {export_id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sha256(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `invoiceguard export trace FILE SPOOL`: whether it found the export, and what it said.
fn trace(file: &Path, spool: &Path) -> (bool, String) {
    run(std::process::Command::new(BINARY)
        .args(["export", "trace"])
        .arg(file)
        .arg(spool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_watermarked_hashed_and_traced_back_to_its_person() {
    let world = World::start().await;
    let carol = world.token("carol").await;
    let dir = invoiceguard_testkit::TempDir::new("leaks").unwrap();

    // A CSV export: its id in a header, a trailing line naming it, carol and the time.
    let csv = send(request(
        "GET",
        &world.url("/invoices/export?limit=2&format=csv"),
        Some(&carol),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(csv.status, 200, "{:?}", csv.body);
    let id = csv.header("x-invoiceguard-export-id").to_owned();
    assert!(id.starts_with("EXP-"), "{id}");
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("# invoiceguard export {id} by carol at ")),
        "{text}"
    );
    assert!(
        text.starts_with("id,partner_id,amount,currency,status,created_by\n"),
        "{text}"
    );
    let event = delivered(&world, &id).await;
    let delivery = &event["outcome"]["export_delivery"];
    assert_eq!(delivery["sha256"], sha256(&csv.body));
    assert_eq!(delivery["bytes"], csv.body.len());
    assert_eq!(
        (
            delivery["watermark"].as_str(),
            delivery["complete"].as_bool()
        ),
        (Some("csv"), Some(true))
    );
    assert_eq!(event["actor"]["id"], "carol");
    assert_eq!(event["category"], "export");
    assert_eq!(event["severity"], "high");
    let unmarked: String = text
        .lines()
        .take(text.lines().count() - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(delivery["sha256_unmarked"], sha256(unmarked.as_bytes()));

    // The leaked file, as delivered: found by its watermark.
    let leaked = dir.path().join("invoices.csv");
    std::fs::write(&leaked, &csv.body).unwrap();
    let (found, out) = trace(&leaked, &world.gateway.spool);
    assert!(found, "{out}");
    assert!(out.contains(&format!("export {id}")), "{out}");
    assert!(out.contains("taken by   carol (user, bearer_jwt)"), "{out}");
    assert!(out.contains("found by   its watermark"), "{out}");
    // A copy whose watermark line was cut, nothing else changed: found by its hash.
    let cut = dir.path().join("cut.csv");
    std::fs::write(&cut, &unmarked).unwrap();
    let (found, out) = trace(&cut, &world.gateway.spool);
    assert!(found, "{out}");
    assert!(out.contains(&format!("export {id}")), "{out}");
    assert!(out.contains("without their watermark"), "{out}");
    // A copy with the watermark kept but a row removed: found by the watermark, said to differ.
    let edited = dir.path().join("edited.csv");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(&edited, lines.join("\n") + "\n").unwrap();
    let (found, out) = trace(&edited, &world.gateway.spool);
    assert!(found && out.contains("changed afterwards"), "{out}");
    // A file no export delivered: not found (exit 1).
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "id\nINV-9\n").unwrap();
    let (found, out) = trace(&other, &world.gateway.spool);
    assert!(!found, "{out}");
    assert!(
        out.contains("no watermark, and no export delivered these bytes"),
        "{out}"
    );

    // A JSON export: a first member naming the export; the rows as they were.
    let json = send(request(
        "GET",
        &world.url("/invoices/export?format=json&limit=1"),
        Some(&carol),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(json.status, 200);
    let id = json.header("x-invoiceguard-export-id").to_owned();
    let body = json.json();
    assert_eq!(body["_export"]["id"], id.as_str());
    assert_eq!(body["_export"]["by"], "carol");
    assert_eq!(body["rows"].as_array().unwrap().len(), 1);
    let event = delivered(&world, &id).await;
    assert_eq!(event["outcome"]["export_delivery"]["watermark"], "json");
    assert_eq!(
        event["outcome"]["export_delivery"]["sha256"],
        sha256(&json.body)
    );
    let leaked = dir.path().join("invoices.json");
    std::fs::write(&leaked, &json.body).unwrap();
    let (found, out) = trace(&leaked, &world.gateway.spool);
    assert!(found && out.contains(&format!("export {id}")), "{out}");
}
