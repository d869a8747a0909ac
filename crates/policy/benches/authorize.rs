//! The authorize phase's hot path: one Cedar decision (request and entities built, policies
//! evaluated) for the baseline, and for the baseline plus 1,000 generated policies, with the
//! decision cache off; and a decision the cache holds.
#![expect(clippy::unwrap_used, reason = "a bench fails loudly at setup")]

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use invoiceguard_authn::{AuthMethod, Principal, PrincipalKind};
use invoiceguard_policy::{ExportFacts, PolicyConfig, PolicyEngine, RequestFacts, ResourceFacts};

fn baseline_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// The baseline plus `n` generated permits, each for its own user and invoice.
fn with_generated(n: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("invoiceguard-bench-{n}-{}", std::process::id()));
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
            format!(
                "@id(\"generated.{i}\")\npermit (principal == User::\"user-{i}\", action in [Action::\"invoice:read\", Action::\"invoice:update\"], resource == Invoice::\"INV-{i}\")\nwhen {{ context.mfa && context.auth_age_s < {} }};\n",
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

fn authorize(c: &mut Criterion) {
    let alice = Principal {
        kind: PrincipalKind::User,
        id: "alice".into(),
        client_id: Some("web".into()),
        roles: vec!["invoicing".into()],
        scopes: vec![],
        amr: vec!["pwd".into(), "otp".into()],
        acr: None,
        auth_time: Some(1_799_999_940),
        mfa: true,
        method: AuthMethod::Jwt,
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
    };
    let segments: Vec<String> = ["invoices", "INV-1"].map(str::to_owned).to_vec();
    let mut group = c.benchmark_group("authorize");
    for (name, engine) in [
        ("baseline", engine(baseline_dir(), 0)),
        ("baseline+1000", engine(with_generated(1000), 0)),
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

criterion_group!(benches, authorize, routes);
criterion_main!(benches);
