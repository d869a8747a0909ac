//! The audit path's cost: one event redacted, encoded, chained and appended to the spool (the
//! group-committed `fsync` runs on its own thread, as in the gateway), alone and while a file
//! sink ships the spool; one durable append (the wait a sensitive request pays); the same append
//! into a sealed spool (`encryption_key_file`: the difference is what encryption at rest costs an
//! event); and archiving a delivered segment (zstd, hashed, its manifest signed), in bytes/s.
#![expect(clippy::unwrap_used, reason = "a bench fails loudly at setup")]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use invoiceguard_audit::{
    Actor, AuditConfig, AuditEvent, AuditLog, DecisionRecord, Outcome, RequestRecord,
    ResourceRecord, Source, now_rfc3339,
};

/// A typical event: an authenticated user, a matched route, a policy decision.
fn event(i: u64) -> AuditEvent {
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
            scopes: vec!["openid".into(), "invoices:write".into()],
            client_id: Some("invoiceguard-demo".into()),
            auth_method: "bearer_jwt",
            amr: vec!["pwd".into(), "otp".into()],
            acr: Some("urn:invoiceguard:acr:mfa".into()),
            mfa: true,
            grants: Vec::new(),
        }),
        source: Source {
            ip: "10.1.2.3".into(),
            user_agent: Some("erp-client/4.2 (linux)".into()),
            session: None,
        },
        request: RequestRecord {
            method: "GET".into(),
            path: format!("/invoices/INV-{i}"),
            route: Some("/invoices/{id}".into()),
            protocol: "HTTP/1.1".into(),
        },
        action: Some("invoice:read".into()),
        resource: Some(ResourceRecord {
            kind: "Invoice".into(),
            id: format!("INV-{i}"),
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
            duration_ms: 1.234,
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

fn spool(name: &str, sink: bool) -> AuditConfig {
    let dir =
        std::env::temp_dir().join(format!("invoiceguard-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sinks = if sink {
        vec![
            toml::from_str(&format!(
                "name = \"archive\"\nfile = {:?}",
                dir.join("archive.log")
            ))
            .unwrap(),
        ]
    } else {
        Vec::new()
    };
    AuditConfig {
        spool: dir.join("spool"),
        sinks,
        // Room for every iteration criterion runs (the folders are removed at the end).
        max_bytes: 16 << 30,
        ..AuditConfig::default()
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));

    let log = AuditLog::open(&spool("record", false)).unwrap();
    let mut i = 0;
    group.bench_function("record", |b| {
        b.iter(|| {
            i += 1;
            log.record(event(i)).unwrap()
        });
    });

    let mut sealed = spool("sealed", false);
    let key = sealed.spool.with_file_name("spool.key");
    std::fs::write(&key, invoiceguard_audit::at_rest::generate_key().unwrap()).unwrap();
    sealed.encryption_key_file = Some(key);
    let log = AuditLog::open(&sealed).unwrap();
    group.bench_function("record_sealed", |b| {
        b.iter(|| {
            i += 1;
            log.record(event(i)).unwrap()
        });
    });
    // What sealing adds to an event, alone: a typical event's line sealed (AES-256-GCM) and
    // escaped, as the writer does before its one write.
    let keyring =
        invoiceguard_audit::at_rest::Keyring::load(sealed.encryption_key_file.as_deref(), &[])
            .unwrap();
    let mut sealer = invoiceguard_audit::at_rest::Sealer::new(&keyring, 1)
        .unwrap()
        .unwrap();
    let line = serde_json::to_vec(&event(1)).unwrap();
    let mut out = Vec::new();
    group.bench_function("seal_one_event", |b| {
        b.iter(|| sealer.seal(&line, &mut out).unwrap());
    });
    drop(log);

    let config = spool("shipped", true);
    let log = std::sync::Arc::new(AuditLog::open(&config).unwrap());
    runtime.block_on(async { log.start_sinks() });
    group.bench_function("record_while_a_file_sink_ships", |b| {
        b.iter(|| {
            i += 1;
            log.record(event(i)).unwrap()
        });
    });

    let log = AuditLog::open(&spool("durable", false)).unwrap();
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    group.bench_function("record_durable", |b| {
        b.iter(|| {
            i += 1;
            runtime.block_on(log.record_durable(event(i))).unwrap()
        });
    });
    group.finish();
    archive(c, &mut i);
    for name in ["record", "shipped", "durable", "sealed", "archive"] {
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("invoiceguard-bench-{name}-{}", std::process::id())),
        );
    }
}

/// Archiving a delivered 4 MiB segment of events: read, compressed (zstd level 3), hashed, its
/// manifest signed and both written and synced.
fn archive(c: &mut Criterion, i: &mut u64) {
    let mut config = spool("archive", false);
    config.segment_bytes = 4 << 20;
    let log = AuditLog::open(&config).unwrap();
    let dir = config.spool.parent().unwrap().to_path_buf();
    while invoiceguard_audit::segments(&config.spool).unwrap().len() < 2 {
        *i += 1;
        log.record(event(*i)).unwrap();
    }
    drop(log);
    let segment = invoiceguard_audit::segments(&config.spool).unwrap()[0]
        .1
        .clone();
    let bytes = std::fs::metadata(&segment).unwrap().len();
    let key = dir.join("archive.pem");
    let pem = signing_key_pem();
    std::fs::write(&key, pem).unwrap();
    let archiver = invoiceguard_audit::archive::Archiver::new(
        &invoiceguard_audit::archive::ArchiveConfig {
            dir: dir.join("archive"),
            signing_key_file: key,
            keep_days: 1,
            max_bytes: 1 << 40,
        },
        invoiceguard_audit::Chain::plain(),
        "bench".to_owned(),
    )
    .unwrap();
    let mut group = c.benchmark_group("archive");
    group.throughput(Throughput::Bytes(bytes));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("segment_4mib", |b| {
        b.iter(|| archiver.archive(&segment).unwrap().unwrap());
    });
    group.finish();
}

/// An Ed25519 private key in PEM (as `invoiceguard policy keygen` writes it).
fn signing_key_pem() -> String {
    use aws_lc_rs::signature::Ed25519KeyPair;
    use base64::Engine;
    let document = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(document.as_ref())
    );
    pem
}

criterion_group!(benches, bench);
criterion_main!(benches);
