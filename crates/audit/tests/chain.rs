//! The hash chain and `verify`: an untouched file verifies; each kind of tampering is reported
//! with its position.
#![expect(clippy::unwrap_used, reason = "tests fail at the first broken step")]

use std::path::{Path, PathBuf};

use invoiceguard_audit::{
    AuditConfig, AuditEvent, AuditLog, Chain, DecisionRecord, Outcome, RequestRecord, Source,
    now_rfc3339, verify,
};

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        event_id: format!("ev-{i}"),
        seq: 0,
        stage: "complete",
        time: now_rfc3339(),
        instance: String::new(),
        request_id: format!("req-{i}"),
        trace_id: None,
        actor: None,
        source: Source {
            ip: "192.0.2.1".into(),
            user_agent: None,
            session: None,
        },
        request: RequestRecord {
            method: "GET".into(),
            path: "/invoices".into(),
            route: None,
            protocol: "HTTP/1.1".into(),
        },
        action: None,
        resource: None,
        break_glass_reason: None,
        decision: DecisionRecord {
            effect: "allow",
            reason: "policy",
            policies: vec![],
            policy_version: "v".into(),
            detail: None,
            shadow: None,
            inputs: None,
        },
        outcome: Outcome {
            status: 200,
            upstream_status: Some(200),
            duration_ms: 1.0,
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

/// A folder with an audit file of `n` events (optionally HMAC-keyed).
fn written(name: &str, n: u64, key: Option<&str>) -> (PathBuf, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("invoiceguard-chain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hmac_key_file = key.map(|k| {
        let path = dir.join("key");
        std::fs::write(&path, k).unwrap();
        path
    });
    let config = AuditConfig {
        spool: dir.join("spool"),
        hmac_key_file,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(&config).unwrap();
    for i in 1..=n {
        log.record(event(i)).unwrap();
    }
    (dir, config.spool.join("00000000000000000001.jsonl"))
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(file: &Path, lines: &[String]) {
    std::fs::write(
        file,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn problems(file: &Path) -> Vec<String> {
    verify(&[file.to_owned()], &Chain::plain(), false).problems
}

#[test]
fn an_untouched_file_verifies_and_the_chain_survives_a_reopen() {
    let (dir, file) = written("intact", 4, None);
    let config = AuditConfig {
        spool: file.parent().unwrap().to_owned(),
        ..AuditConfig::default()
    };
    AuditLog::open(&config).unwrap().record(event(5)).unwrap();
    let result = verify(&[file], &Chain::plain(), false);
    assert!(result.is_intact(), "{:?}", result.problems);
    assert_eq!((result.events, result.seq_range), (5, Some((1, 5))));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_modified_event_is_reported() {
    let (dir, file) = written("modified", 5, None);
    let mut all = lines(&file);
    all[2] = all[2].replace("\"status\":200", "\"status\":403");
    rewrite(&file, &all);
    let found = problems(&file);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("00000000000000000001.jsonl:3: seq 3 was modified: seq 4 (")
            && found[0].contains(".jsonl:4) no longer chains to it"),
        "the altered event is named: {found:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_removed_event_is_reported() {
    let (dir, file) = written("removed", 5, None);
    let mut all = lines(&file);
    all.remove(2);
    rewrite(&file, &all);
    let found = problems(&file);
    assert_eq!(
        found,
        [format!(
            "{}:3: seq 4 after seq 2: 1 event(s) removed",
            file.display()
        )]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_inserted_or_reordered_event_is_reported() {
    let (dir, file) = written("inserted", 5, None);
    let mut all = lines(&file);
    let copy = all[1].clone();
    all.insert(3, copy);
    rewrite(&file, &all);
    let found = problems(&file);
    assert!(
        found.iter().any(|p| p.contains(
            "00000000000000000001.jsonl:4: seq 2 after seq 3: an event was inserted or the events were reordered"
        )),
        "{found:?}"
    );

    let (dir2, file2) = written("reordered", 5, None);
    let mut all = lines(&file2);
    all.swap(1, 2);
    rewrite(&file2, &all);
    let found = problems(&file2);
    assert!(found.iter().any(|p| p.contains("reordered")), "{found:?}");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(dir2).unwrap();
}

#[test]
fn a_replayed_run_is_named_a_duplicate_not_tampering() {
    let (dir, file) = written("replayed", 8, None);
    let all = lines(&file);
    // A sink sent 5 to 8 again after a crash, then went on with nothing lost.
    let mut replayed = all.clone();
    replayed.extend_from_slice(&all[4..8]);
    rewrite(&file, &replayed);
    let result = verify(std::slice::from_ref(&file), &Chain::plain(), false);
    assert!(result.is_intact(), "{:?}", result.problems);
    assert_eq!((result.events, result.seq_range), (8, Some((1, 8))));
    assert_eq!(
        result.duplicates,
        [format!(
            "{}:9: seq 5 to 8 (4 event(s)) repeat the events before them byte for byte: delivered twice (a replay after a crash), not changed",
            file.display()
        )]
    );
    // A run that stops short of where it left off, or differs in a byte, is not a replay.
    let mut short = all.clone();
    short.extend_from_slice(&all[4..6]);
    rewrite(&file, &short);
    let found = problems(&file);
    assert!(
        found.len() == 1 && found[0].contains(":9: seq 5 after seq 8: an event was inserted"),
        "{found:?}"
    );
    let mut changed = all.clone();
    changed.extend_from_slice(&all[4..8]);
    changed[9] = changed[9].replace("\"status\":200", "\"status\":201");
    rewrite(&file, &changed);
    assert!(!problems(&file).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_truncated_head_or_tail_is_reported() {
    let (dir, file) = written("head", 4, None);
    let mut all = lines(&file);
    all.remove(0);
    rewrite(&file, &all);
    assert!(problems(&file)[0].contains("does not start the chain"));
    let mut all = lines(&file);
    let last = all.len() - 1;
    all[last].truncate(20);
    rewrite(&file, &all);
    assert!(
        problems(&file)
            .iter()
            .any(|p| p.contains("not a JSON event"))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cutting_the_end_off_is_found_only_with_an_anchor() {
    let (dir, file) = written("cut", 6, None);
    let whole = verify(std::slice::from_ref(&file), &Chain::plain(), false);
    let anchor = invoiceguard_audit::Anchor {
        last_seq: Some(6),
        head: whole.head.clone(),
        source: "the note".to_owned(),
    };
    let mut all = lines(&file);
    all.truncate(4);
    rewrite(&file, &all);
    let mut cut = verify(std::slice::from_ref(&file), &Chain::plain(), false);
    assert!(cut.is_intact(), "the chain alone cannot see it");
    cut.check_anchor(&anchor);
    assert_eq!(
        cut.problems,
        ["the trail ends at seq 4, but the note says seq 6: 2 event(s) at the end were removed"]
    );
    // The last event replaced by a forged one with the right seq: the head differs.
    let mut forged = lines(&file);
    forged.truncate(5);
    let (_, original) = written("cut-original", 6, None);
    forged.push(lines(&original)[5].replace("\"status\":200", "\"status\":500"));
    rewrite(&file, &forged);
    let mut result = verify(std::slice::from_ref(&file), &Chain::plain(), false);
    result.check_anchor(&anchor);
    assert!(
        result
            .problems
            .iter()
            .any(|p| p.contains("the last event was modified or replaced")),
        "{:?}",
        result.problems
    );
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(original.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn a_keyed_chain_needs_its_key() {
    let (dir, file) = written("keyed", 3, Some("a-secret-of-at-least-16-bytes"));
    assert!(
        verify(
            std::slice::from_ref(&file),
            &Chain::keyed(b"a-secret-of-at-least-16-bytes"),
            false
        )
        .is_intact()
    );
    let wrong = verify(
        std::slice::from_ref(&file),
        &Chain::keyed(b"another-secret-of-16-bytes"),
        false,
    );
    assert!(!wrong.is_intact());
    let plain = verify(&[file], &Chain::plain(), false);
    assert!(!plain.is_intact(), "a keyed chain is not a plain one");
    assert!(
        plain
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("--key-file")),
        "read without its key, the hint says so: {:?}",
        plain.hint
    );
    std::fs::remove_dir_all(dir).unwrap();
}
