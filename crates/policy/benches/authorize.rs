//! The authorize phase's hot path: one Cedar decision (request and entities built, policies
//! evaluated) for the baseline, and for the baseline plus 1,000 generated policies, with the
//! decision cache off; and a decision the cache holds. The goal is a p99, and criterion reports
//! means: each decision is also timed on its own and the distribution printed.
#![expect(clippy::unwrap_used, reason = "a bench fails loudly at setup")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use invoiceguard_authn::{AuthMethod, Principal, PrincipalKind};
use invoiceguard_policy::{ExportFacts, PolicyConfig, PolicyEngine, RequestFacts, ResourceFacts};

fn baseline_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// The baseline plus `n` generated permits, each for its own user and invoice.
fn with_generated(n: usize) -> PathBuf {
    with_generated_on(
        n,
        "Action::\"invoice:read\", Action::\"invoice:update\"",
        "resource == Invoice::\"INV-{i}\"",
    )
}

/// The baseline plus `n` policies about actions the benched request (`invoice:read`) is not.
fn with_generated_elsewhere(n: usize) -> PathBuf {
    with_generated_on(
        n,
        "Action::\"partner:update\", Action::\"partner:read\"",
        "resource == Partner::\"P-{i}\"",
    )
}

/// The baseline plus `n` generated policies, each on the `actions` given and its own resource
/// (`{i}` in `resource` is the policy's number), for a user of its own.
fn with_generated_on(n: usize, actions: &str, resource: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "invoiceguard-bench-{n}-{}-{}",
        actions.len(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(baseline_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let generated: String = (0..n)
        .map(|i| {
            let resource = resource.replace("{i}", &i.to_string());
            format!(
                "@id(\"generated.{i}\")\npermit (principal == User::\"user-{i}\", action in [{actions}], {resource})\nwhen {{ context.mfa && context.auth_age_s < {} }};\n",
                3600 + i
            )
        })
        .collect();
    std::fs::write(dir.join("generated.cedar"), generated).unwrap();
    dir
}

fn engine(dir: PathBuf, decision_cache_entries: usize) -> PolicyEngine {
    PolicyEngine::load(&PolicyConfig {
        dir,
        decision_cache_entries,
        ..Default::default()
    })
    .unwrap()
}

/// Alice reading an invoice bob created, with MFA: allowed by the baseline.
fn alice_reads() -> (Principal, RequestFacts, Vec<String>) {
    let alice = Principal {
        kind: PrincipalKind::User,
        id: "alice".into(),
        client_id: Some("web".into()),
        roles: vec!["invoicing".into()],
        scopes: vec!["openid".into(), "invoices:read".into()],
        amr: vec!["pwd".into(), "otp".into()],
        acr: None,
        auth_time: Some(1_799_999_940),
        mfa: true,
        method: AuthMethod::Jwt,
        issued_at: None,
        email: None,
    };
    let facts = RequestFacts {
        source_ip: "192.0.2.10".parse().unwrap(),
        now_unix: 1_800_000_000,
        resource: ResourceFacts {
            creator: Some("bob".into()),
            amount: Some(120),
            ..Default::default()
        },
        export: ExportFacts::default(),
        break_glass_reason: None,
        user_scopes_enforced: true,
    };
    let segments: Vec<String> = ["invoices", "INV-1"].map(str::to_owned).to_vec();
    (alice, facts, segments)
}

fn authorize(c: &mut Criterion) {
    let (alice, facts, segments) = alice_reads();
    let mut group = c.benchmark_group("authorize");
    for (name, engine) in [
        ("baseline", engine(baseline_dir(), 0)),
        ("baseline+1000", engine(with_generated(1000), 0)),
        (
            "baseline+1000-other-actions",
            engine(with_generated_elsewhere(1000), 0),
        ),
        ("cache-hit", engine(baseline_dir(), 4096)),
    ] {
        let route = engine.routes().find("GET", &segments).unwrap();
        assert!(engine.authorize(&alice, &route, &facts).is_allowed());
        group.bench_function(name, |b| {
            b.iter(|| engine.authorize(&alice, &route, &facts))
        });
    }
    group.finish();
}

/// Each decision timed on its own (the decision cache off): p50, p99 and the slowest.
fn decision_latency(_c: &mut Criterion) {
    let (alice, facts, segments) = alice_reads();
    for (name, engine, decisions) in [
        ("baseline", engine(baseline_dir(), 0), 20_000),
        ("baseline+1000", engine(with_generated(1000), 0), 2_000),
        (
            "baseline+1000-other-actions",
            engine(with_generated_elsewhere(1000), 0),
            20_000,
        ),
    ] {
        let route = engine.routes().find("GET", &segments).unwrap();
        let mut times: Vec<Duration> = (0..decisions)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(engine.authorize(&alice, &route, &facts));
                start.elapsed()
            })
            .collect();
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        println!(
            "authorize/{name}: {decisions} decisions timed one by one: p50 {:.1} µs, p99 {:.1} µs, slowest {:.1} µs",
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}

/// Route matching: the method and the decoded segments to a route of the baseline's table.
fn routes(c: &mut Criterion) {
    let engine = engine(baseline_dir(), 0);
    let mut group = c.benchmark_group("routes");
    for (name, method, path) in [
        ("invoice-read", "GET", &["invoices", "INV-1042"][..]),
        (
            "invoice-approve",
            "POST",
            &["invoices", "INV-1042", "approve"][..],
        ),
        ("no-route", "DELETE", &["settings", "everything"][..]),
    ] {
        let segments: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            engine.routes().find(method, &segments).is_some(),
            name != "no-route"
        );
        group.bench_function(name, |b| {
            b.iter(|| engine.routes().find(method, &segments).is_some())
        });
    }
    group.finish();
}

criterion_group!(benches, authorize, decision_latency, routes);
criterion_main!(benches);
