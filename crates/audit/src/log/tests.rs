//! Tests of `log.rs`.

use super::*;
use crate::event::*;

fn event(request_id: &str) -> AuditEvent {
    AuditEvent {
        event_id: format!("ev-{request_id}"),
        seq: 0,
        stage: "complete",
        time: now_rfc3339(),
        instance: String::new(),
        request_id: request_id.to_owned(),
        trace_id: None,
        actor: None,
        source: Source {
            ip: "127.0.0.1".to_owned(),
            user_agent: None,
            session: None,
        },
        request: RequestRecord {
            method: "GET".to_owned(),
            path: "/invoices".to_owned(),
            route: Some("/invoices".to_owned()),
            protocol: "HTTP/1.1".to_owned(),
        },
        action: Some("invoice:list".to_owned()),
        resource: None,
        break_glass_reason: None,
        decision: DecisionRecord {
            effect: "deny",
            reason: "unauthenticated",
            policies: vec![],
            policy_version: "v".to_owned(),
            detail: Some("missing_token".to_owned()),
            shadow: None,
            inputs: None,
        },
        outcome: Outcome {
            status: 401,
            upstream_status: None,
            duration_ms: 0.1,
            response_bytes: None,
            error_side: Some("client"),
            export_rows: None,
            export_delivery: None,
        },
        severity: "warning",
        category: "authorization",
        lifecycle: None,
        prev_hash: String::new(),
    }
}

fn config(name: &str) -> AuditConfig {
    let dir =
        std::env::temp_dir().join(format!("invoiceguard-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    AuditConfig {
        spool: dir.join("nested/spool"),
        ..AuditConfig::default()
    }
}

fn spool_events(dir: &Path) -> Vec<serde_json::Value> {
    segments(dir)
        .unwrap()
        .iter()
        .flat_map(|(_, path)| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn sequence_continues_after_reopen() {
    let config = config("reopen");
    let log = AuditLog::open(&config).unwrap();
    assert_eq!(log.record(event("a")).unwrap(), 1);
    assert_eq!(log.record(event("b")).unwrap(), 2);
    drop(log);
    let log = AuditLog::open(&config).unwrap();
    assert_eq!(log.record(event("c")).unwrap(), 3);
    let lines = spool_events(&config.spool);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["request_id"], "c");
    assert_eq!(lines[2]["seq"], 3);
    assert_eq!(lines[0]["decision"]["effect"], "deny");
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&segment_path(&config.spool, 1)), 0o600);
    assert_eq!(mode(&config.spool), 0o700);
    std::fs::remove_dir_all(config.spool.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn segments_rotate_and_go_only_when_every_sink_has_them_and_the_cap_holds() {
    let mut config = config("rotate");
    config.segment_bytes = 4096;
    config.max_bytes = 3 * 4096;
    config.sinks = ["siem", "archive"]
        .map(|name| toml::from_str(&format!("name = \"{name}\"\nfile = \"x\"")).unwrap())
        .to_vec();
    let log = AuditLog::open(&config).unwrap();
    let mut written = 0;
    let full = loop {
        match log.record(event(&format!("r{written}"))) {
            Ok(_) => written += 1,
            Err(error) => break error,
        }
        assert!(written < 1000, "the cap was never reached");
    };
    // What already happened is kept in memory until the spool has room; a refusal before
    // forwarding is kept too (within half the room), an event before forwarding never.
    let AuditError::Held { waiting: 1, cause } = &full else {
        panic!("{full}");
    };
    assert!(matches!(**cause, AuditError::Full { .. }), "{cause}");
    assert!(!log.is_writable());
    assert_eq!(log.held(), 1);
    assert!(matches!(
        log.record_before_forward(event("not-forwarded")),
        Err(AuditError::Full { .. })
    ));
    assert_eq!(log.held(), 1, "an event before forwarding is never kept");
    let segments_now = segments(&config.spool).unwrap();
    assert!(segments_now.len() >= 3, "{segments_now:?}");
    let total: u64 = segments_now
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= config.max_bytes);
    // One sink past the first segment is not enough; both are.
    let second = crate::spool::Cursor {
        segment: segments_now[1].0,
        offset: 0,
    };
    crate::spool::save_cursor(&config.spool, "siem", second);
    assert!(matches!(
        log.record_refusal(event("still-full")),
        Err(AuditError::Held { waiting: 2, .. })
    ));
    crate::spool::save_cursor(&config.spool, "archive", second);
    log.recover();
    assert_eq!(log.held(), 0, "written once there is room");
    log.record(event("room-again")).unwrap();
    let after = segments(&config.spool).unwrap();
    assert_eq!(after[0].0, segments_now[1].0, "the delivered segment went");
    // The chain runs across segments, from the first event on.
    let files: Vec<PathBuf> = segments_now.iter().map(|(_, p)| p.clone()).collect();
    assert!(crate::verify(&files[1..], &Chain::plain(), true).is_intact());
    let events = spool_events(&config.spool);
    let last: Vec<&str> = events[events.len() - 3..]
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        last,
        [format!("r{written}").as_str(), "still-full", "room-again"],
        "kept events are written first, in order"
    );
    assert_eq!(
        events.last().unwrap()["seq"].as_u64().unwrap(),
        written + 3,
        "an event not written takes no sequence number"
    );
    std::fs::remove_dir_all(config.spool.parent().unwrap().parent().unwrap()).unwrap();
}

#[tokio::test]
async fn durable_appends_span_rotations_without_syncing_under_the_writer() {
    let mut config = config("durable");
    config.segment_bytes = 4096;
    config.max_bytes = 1 << 20;
    let log = AuditLog::open(&config).unwrap();
    for i in 0..40 {
        let seq = log.record_durable(event(&format!("d{i}"))).await.unwrap();
        assert_eq!(seq, i + 1);
    }
    // The closed segments went to the fsync thread; each durable append still completed.
    assert!(segments(&config.spool).unwrap().len() >= 5);
    assert!(
        log.syncer.files.lock().unwrap().closed.is_empty(),
        "every closed segment synced"
    );
    assert_eq!(*log.durable.borrow(), 40);
    std::fs::remove_dir_all(config.spool.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn a_torn_tail_is_cut_kept_and_reported_when_the_spool_opens() {
    let config = config("torn");
    let log = AuditLog::open(&config).unwrap();
    for id in ["a", "b", "c"] {
        log.record(event(id)).unwrap();
    }
    drop(log);
    let segment = segment_path(&config.spool, 1);
    let whole = std::fs::metadata(&segment).unwrap().len();
    // The process died (or the disk filled) in the middle of event 4.
    let torn = br#"{"event_id":"ev-d","seq":4,"stage":"comp"#;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(torn)
        .unwrap();
    let log = AuditLog::open(&config).unwrap();
    assert_eq!(log.record(event("e")).unwrap(), 5);
    let events = spool_events(&config.spool);
    assert_eq!(events.len(), 5, "every line is a whole event");
    assert_eq!(events[3]["action"], "audit:spool_repaired");
    assert_eq!(events[3]["category"], "audit");
    assert_eq!(events[3]["severity"], "error");
    let kept = config.spool.join(format!("torn-{:020}-{whole}.bin", 1));
    assert_eq!(std::fs::read(&kept).unwrap(), torn);
    let detail = events[3]["decision"]["detail"].as_str().unwrap();
    assert!(detail.contains(&kept.display().to_string()), "{detail}");
    assert!(crate::verify(std::slice::from_ref(&segment), &Chain::plain(), false).is_intact());
    drop(log);

    // A whole event that only lacks its newline keeps its place in the chain.
    let mut text = std::fs::read(&segment).unwrap();
    assert_eq!(text.pop(), Some(b'\n'));
    std::fs::write(&segment, &text).unwrap();
    let log = AuditLog::open(&config).unwrap();
    let events = spool_events(&config.spool);
    assert_eq!(events.len(), 6);
    assert_eq!(events[4]["request_id"], "e");
    assert!(
        events[5]["decision"]["detail"]
            .as_str()
            .unwrap()
            .contains("had no newline")
    );
    assert!(crate::verify(&[segment], &Chain::plain(), false).is_intact());
    drop(log);
    std::fs::remove_dir_all(config.spool.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn a_lagging_sink_is_recorded_and_so_is_its_recovery() {
    let config = config("lag");
    let log = Arc::new(AuditLog::open(&config).unwrap());
    for name in ["a", "b", "c"] {
        log.record(event(name)).unwrap();
    }
    let mut watch =
        crate::sinks::LagWatch::new("siem", Duration::from_millis(20), Arc::downgrade(&log));
    // Delivered up to seq 1 of 3: not yet lagging.
    watch.check(3, 1);
    assert_eq!(spool_events(&config.spool).len(), 3);
    std::thread::sleep(Duration::from_millis(30));
    watch.check(3, 1);
    let events = spool_events(&config.spool);
    assert_eq!(events.len(), 4);
    assert_eq!(events[3]["action"], "audit:sink_lagging");
    assert_eq!(events[3]["category"], "audit");
    assert_eq!(events[3]["severity"], "high");
    let detail = events[3]["decision"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("`siem`") && detail.contains("2 event(s) behind"),
        "{detail}"
    );
    // Still behind: recorded once only.
    watch.check(4, 3);
    assert_eq!(spool_events(&config.spool).len(), 4);
    // Everything up to the lagging event delivered: recovered.
    watch.check(4, 4);
    let events = spool_events(&config.spool);
    assert_eq!(events.len(), 5);
    assert_eq!(events[4]["action"], "audit:sink_recovered");
    // A watch with no alert never records.
    let mut off = crate::sinks::LagWatch::new("siem", Duration::ZERO, Arc::downgrade(&log));
    off.check(100, 0);
    std::thread::sleep(Duration::from_millis(5));
    off.check(100, 0);
    assert_eq!(spool_events(&config.spool).len(), 5);
    let _ = std::fs::remove_dir_all(config.spool.parent().unwrap());
}

#[test]
fn a_sealed_spool_hides_its_events_reads_back_and_rotates_its_key() {
    let mut config = config("sealed");
    let keys = config
        .spool
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (old_key, new_key) = (keys.join("old.key"), keys.join("new.key"));
    std::fs::write(&old_key, crate::at_rest::generate_key().unwrap()).unwrap();
    std::fs::write(&new_key, crate::at_rest::generate_key().unwrap()).unwrap();
    config.encryption_key_file = Some(old_key.clone());
    config.segment_bytes = 4096;
    config.max_bytes = 1 << 20;
    {
        let log = AuditLog::open(&config).unwrap();
        for i in 0..20 {
            log.record(event(&format!("sealed-{i}"))).unwrap();
        }
    }
    // Nothing of an event is readable in the files.
    for (_, path) in segments(&config.spool).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(8)
                .any(|w| w == b"sealed-1" || w == b"/invoice"),
            "{} holds plaintext",
            path.display()
        );
    }
    let segments_before = segments(&config.spool).unwrap().len();
    assert!(segments_before > 1, "rotated at 4096 bytes");
    // The key rotates: the old one only reads.
    config.encryption_key_file = Some(new_key.clone());
    config.decryption_key_files = vec![old_key.clone()];
    {
        let log = AuditLog::open(&config).unwrap();
        assert_eq!(
            log.last_seq(),
            20,
            "the sequence continues across sealed segments"
        );
        for i in 20..25 {
            log.record(event(&format!("sealed-{i}"))).unwrap();
        }
    }
    let all = segments(&config.spool).unwrap();
    assert!(
        all.len() > segments_before,
        "the new key starts a segment of its own"
    );
    let ids: std::collections::BTreeSet<String> = all
        .iter()
        .filter_map(|(_, path)| {
            let bytes = std::fs::read(path).unwrap();
            let first = bytes.split(|b| *b == b'\n').next()?;
            let header: serde_json::Value = serde_json::from_slice(first).ok()?;
            header["key_id"].as_str().map(str::to_owned)
        })
        .collect();
    assert_eq!(ids.len(), 2, "segments of both keys: {ids:?}");
    let files: Vec<PathBuf> = all.into_iter().map(|(_, path)| path).collect();
    let result = crate::verify(&files, &Chain::plain(), false);
    assert!(result.is_intact(), "{:?}", result.problems);
    assert_eq!(result.events, 25);
    // A changed sealed line is found.
    let last = files.last().unwrap();
    let mut text = std::fs::read(last).unwrap();
    let at = text.len() - 10;
    text[at] = if text[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(last, text).unwrap();
    let result = crate::verify(&files, &Chain::plain(), false);
    assert!(
        result
            .problems
            .iter()
            .any(|p| p.contains("cannot be opened")),
        "{:?}",
        result.problems
    );
}

#[test]
fn a_spool_others_may_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let config = config("exposed");
    drop(AuditLog::open(&config).unwrap());
    std::fs::set_permissions(&config.spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let error = AuditLog::open(&config).err().unwrap().to_string();
    assert!(
        error.contains("mode 755") && error.contains("chmod 700"),
        "{error}"
    );
    std::fs::set_permissions(&config.spool, std::fs::Permissions::from_mode(0o700)).unwrap();
    let segment = segments(&config.spool).unwrap()[0].1.clone();
    std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = AuditLog::open(&config).err().unwrap().to_string();
    assert!(error.contains("chmod 600"), "{error}");
    std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(AuditLog::open(&config).is_ok());
}
