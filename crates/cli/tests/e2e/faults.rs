//! The audit trail under faults, with the real parts: a spool on a filesystem that fills up under
//! load (a small tmpfs), a torn tail planted before a start, and `kill -9` with a file sink.
//! Every forwarded request keeps a whole event, and `audit verify` passes on the spool and on the
//! sink's files afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use super::*;

/// A tmpfs of `size` mounted for the test, unmounted when dropped (the gateway using it must be
/// stopped first). Mounting needs root, which `make test` runs as.
struct SmallDisk {
    dir: TempDir,
    mounted: bool,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = TempDir::new("small-disk").unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (the full-disk test needs root, as `make test` runs)",
            dir.path().display()
        );
        Self { dir, mounted: true }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a ballast file until `free` bytes are left.
    fn fill_leaving(&self, free: u64) -> PathBuf {
        let ballast = self.path().join("ballast");
        let available = available_bytes(self.path());
        let size = available.saturating_sub(free);
        std::fs::write(&ballast, vec![0u8; usize::try_from(size).unwrap()]).unwrap();
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
    }
}

/// Free bytes of the filesystem holding `path` (`df`).
fn available_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Runs `invoiceguard audit verify` on `paths`; its exit status and output.
fn audit_verify(paths: &[&Path]) -> (bool, String) {
    run(Command::new(BINARY).args(["audit", "verify"]).args(paths))
}

/// Every line of the spool's segments parses as an event: nothing torn, nothing glued.
fn assert_whole_lines(gateway: &GatewayProcess) {
    for segment in gateway.segments() {
        let text = std::fs::read_to_string(&segment).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{}",
            segment.display()
        );
        for (n, line) in text.lines().enumerate() {
            assert!(
                serde_json::from_str::<Value>(line).is_ok(),
                "{}:{}: not a whole event: {line:.200}",
                segment.display(),
                n + 1
            );
        }
    }
}

/// The request ids the upstream received, and their methods.
async fn forwarded(upstream: &Upstream) -> BTreeMap<String, String> {
    upstream
        .journal()
        .await
        .unwrap()
        .iter()
        .filter_map(|entry| {
            let id = entry["headers"]
                .as_array()?
                .iter()
                .find(|pair| pair[0] == "x-request-id")?[1]
                .as_str()?
                .to_owned();
            Some((id, entry["method"].as_str()?.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_forwards_nothing_unrecorded_and_leaves_no_torn_event() {
    let disk = SmallDisk::mount("4m");
    let spool = disk.path().join("spool");
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    let text = sections(&idp.issuer, &upstream.url(), "");
    let mut gateway =
        GatewayProcess::start_with_audit(Path::new(BINARY), &text, Some(&spool), "stdout = false")
            .await
            .unwrap();
    let (alice, dave) = (
        idp.user_token("alice", TokenRequest::default())
            .await
            .unwrap(),
        idp.user_token("dave", TokenRequest::default())
            .await
            .unwrap(),
    );
    // Room for some tens of events: the disk fills under the load below.
    let ballast = disk.fill_leaving(48 * 1024);

    // Reads, creations (an `authorized` event first) and settings changes (one synced first),
    // from eight clients at once; half-way, the ballast goes and the disk has room again.
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (url, alice, dave, answers) = (
            gateway.url.clone(),
            alice.clone(),
            dave.clone(),
            answers.clone(),
        );
        clients.push(tokio::spawn(async move {
            for i in 0..80 {
                let reply = match (client + i) % 3 {
                    0 => get(&format!("{url}/invoices/INV-1"), Some(&alice)).await,
                    1 => {
                        send(request(
                            "POST",
                            &format!("{url}/invoices"),
                            Some(&alice),
                            Some(json!({"partner_id": "P-1", "amount": 10.0})),
                        ))
                        .await
                    }
                    _ => {
                        send(request(
                            "PUT",
                            &format!("{url}/settings"),
                            Some(&dave),
                            Some(json!({"company": "Example Kft.", "default_currency": "EUR"})),
                        ))
                        .await
                    }
                }
                .unwrap();
                answers
                    .lock()
                    .unwrap()
                    .push((reply.status, reply.header("x-request-id").to_owned()));
            }
        }));
    }
    let free_later = {
        let answers = answers.clone();
        tokio::spawn(async move {
            while answers.lock().unwrap().len() < 320 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            std::fs::remove_file(&ballast).unwrap();
        })
    };
    for client in clients {
        client.await.unwrap();
    }
    free_later.await.unwrap();
    // The events kept in memory are written once there is room, without a request to carry them.
    let mut ready = false;
    for _ in 0..50 {
        let report = get(&format!("{}/readyz", gateway.admin_url), None)
            .await
            .unwrap();
        if report.json()["audit"]["writable"] == true {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the spool takes events again once the disk has room");
    let answers = answers.lock().unwrap().clone();
    let refused = answers.iter().filter(|(status, _)| *status == 503).count();
    assert!(refused > 0, "the disk filled: some requests were refused");
    assert!(
        answers.iter().filter(|(s, _)| *s == 200).count() > 100,
        "{answers:?}"
    );
    let failures = super::sinks::metric(&gateway, "invoiceguard_audit_write_failures_total").await;
    assert!(failures > 0.0);
    eprintln!(
        "full disk: {} answers, {refused} refused (503), {failures} failed writes",
        answers.len()
    );

    assert_whole_lines(&gateway);
    let events = gateway.audit_events();
    let complete: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["stage"] == "complete")
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    let authorized: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["stage"] == "authorized")
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    // Every answer the clients got, and every request the upstream executed, has its event.
    for (status, id) in &answers {
        assert!(
            complete.contains(id.as_str()),
            "the {status} answer {id} has no complete event"
        );
    }
    let executed = forwarded(&upstream).await;
    assert!(executed.len() > 100);
    for (id, method) in &executed {
        assert!(
            complete.contains(id.as_str()),
            "{method} {id} forwarded without an event"
        );
        if method != "GET" {
            assert!(
                authorized.contains(id.as_str()),
                "{method} {id} forwarded before its authorized event was written"
            );
        }
    }
    gateway.terminate().unwrap();
    let (ok, report) = audit_verify(&[&spool]);
    assert!(ok, "{report}");
    drop(gateway);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_repaired_and_reported_at_start() {
    let world = World::start().await;
    let alice = world.token("alice").await;
    let mut gateway = world.gateway;
    for _ in 0..5 {
        get(&format!("{}/invoices/INV-1", gateway.url), Some(&alice))
            .await
            .unwrap();
    }
    gateway.terminate().unwrap();
    let segment = gateway.segments().pop().unwrap();
    let torn = b"{\"event_id\":\"3f0c\",\"seq\":6,\"stage\":\"compl";
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(torn)
        .unwrap();
    gateway.kill_and_restart(Path::new(BINARY)).await.unwrap();
    let reply = get(&format!("{}/invoices/INV-1", gateway.url), Some(&alice))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_whole_lines(&gateway);
    let events = gateway.audit_events();
    let repair = events
        .iter()
        .find(|e| e["action"] == "audit:spool_repaired")
        .expect("the repair is on the trail");
    assert_eq!(repair["category"], "audit");
    assert_eq!(repair["severity"], "error");
    // After the policy set loaded at start and the five events before the tear.
    assert_eq!(repair["seq"], 7);
    let kept = std::fs::read_dir(segment.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("torn-")
        })
        .expect("the torn bytes are kept");
    assert_eq!(std::fs::read(kept).unwrap(), torn);
    assert_eq!(
        super::sinks::metric(&gateway, "invoiceguard_audit_spool_repairs_total").await,
        1.0
    );
    assert!(
        gateway.stderr_text().contains("repaired"),
        "{}",
        gateway.stderr_text()
    );
    gateway.terminate().unwrap();
    let (ok, report) = audit_verify(&[segment.parent().unwrap()]);
    assert!(ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_leaves_a_file_sink_that_verifies() {
    let dir = TempDir::new("file-sink-kill").unwrap();
    let archive = dir.path().join("archive/audit.log");
    let sink = format!("\n[[audit.sinks]]\nname = \"archive\"\nfile = {archive:?}\n");
    let world = World::start_audit(&sink, "stdout = false").await;
    let alice = world.token("alice").await;
    let url = world.url("/invoices/INV-1");
    let mut gateway = world.gateway;
    for round in 0..3 {
        let load: Vec<_> = (0..4)
            .map(|_| {
                let (url, alice) = (url.clone(), alice.clone());
                tokio::spawn(async move {
                    for _ in 0..150 {
                        if get(&url, Some(&alice)).await.is_err() {
                            return; // cut by the kill
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + 100 * round)).await;
        gateway.kill_and_restart(Path::new(BINARY)).await.unwrap();
        for client in load {
            client.await.unwrap();
        }
    }
    // Let the sink catch up, then stop cleanly.
    for _ in 0..100 {
        let lag = super::sinks::metric(
            &gateway,
            "invoiceguard_audit_sink_lag_events{sink=\"archive\"}",
        )
        .await;
        if lag == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.terminate().unwrap();
    let (ok, report) = audit_verify(&[&archive]);
    assert!(ok, "{report}");
    assert!(
        !report.contains("repeat"),
        "the sink wrote no event twice: {report}"
    );
    let in_sink = std::fs::read_to_string(&archive).unwrap().lines().count();
    assert_eq!(
        in_sink,
        gateway.audit_events().len(),
        "the file holds every event of the spool once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_every_request_logs_once_a_second_and_sink_lag_is_exact() {
    // A sink whose collector is not there: nothing is delivered, so its lag is every event.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sink = format!("\n[[audit.sinks]]\nname = \"siem\"\nhttp = \"http://127.0.0.1:{port}/\"\n");
    let mut world = World::start_audit(&sink, "stdout = false").await;
    let alice = world.token("alice").await;
    // The upstream goes away: every request fails the same way.
    world.upstream.stop();
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let reply = get(&world.url("/invoices/INV-1"), Some(&alice))
            .await
            .unwrap();
        assert_eq!(reply.status, 502);
    }
    let seconds = started.elapsed().as_secs() + 1;
    let logs = world.gateway.stderr_text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert!(
        !lines.is_empty() && lines.len() as u64 <= seconds + 1,
        "{} lines in {seconds} s: {logs}",
        lines.len()
    );
    assert!(
        lines.iter().skip(1).all(|l| l.contains("held_back")),
        "{lines:?}"
    );
    // The requests' events and the policy set's, loaded at start.
    let written = world.gateway.audit_events().len() as f64;
    assert_eq!(written, 201.0);
    assert_eq!(
        super::sinks::metric(
            &world.gateway,
            "invoiceguard_audit_sink_lag_events{sink=\"siem\"}"
        )
        .await,
        written,
        "the lag is what was written and not delivered, when scraped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_events_off_the_end_is_found_by_audit_verify() {
    let world = World::start().await;
    let alice = world.token("alice").await;
    for _ in 0..10 {
        get(&world.url("/invoices/INV-1"), Some(&alice))
            .await
            .unwrap();
    }
    let mut gateway = world.gateway;
    gateway.terminate().unwrap();
    let spool = gateway.spool.clone();
    let (ok, report) = audit_verify(&[&spool]);
    assert!(ok && report.contains("end anchored"), "{report}");
    let head = report
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap()
        .to_owned();
    // An archived copy, checked later against the noted head and last seq.
    let copy = gateway.dir().join("archived.jsonl");
    std::fs::copy(gateway.segments().pop().unwrap(), &copy).unwrap();
    let out = Command::new(BINARY)
        .args([
            "audit",
            "verify",
            "--expect-last-seq",
            "11",
            "--expect-head",
            &head,
        ])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The last four events (of the policy set's and ten requests') are cut off the spool and the
    // copy: the chain alone still holds.
    for file in [gateway.segments().pop().unwrap(), copy.clone()] {
        let text = std::fs::read_to_string(&file).unwrap();
        let kept: Vec<&str> = text.lines().take(7).collect();
        std::fs::write(&file, format!("{}\n", kept.join("\n"))).unwrap();
    }
    let (ok, report) = audit_verify(&[&spool]);
    assert!(!ok, "{report}");
    assert!(
        report.contains("the trail ends at seq 7, but the spool's head file"),
        "{report}"
    );
    assert!(
        report.contains("4 event(s) at the end were removed"),
        "{report}"
    );
    let out = Command::new(BINARY)
        .args(["audit", "verify", "--expect-last-seq", "11"])
        .arg(&copy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("4 event(s) at the end were removed"),
        "{report}"
    );
    let out = Command::new(BINARY)
        .args(["audit", "verify"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "without an anchor it cannot be seen: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
