//! The audit path's cost: one event redacted, encoded, chained and appended to the spool (the
//! group-committed `fsync` runs on its own thread, as in the gateway), alone and while a file
//! sink ships the spool; and one durable append (the wait a sensitive request pays).
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
    for name in ["record", "shipped", "durable"] {
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("invoiceguard-bench-{name}-{}", std::process::id())),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
