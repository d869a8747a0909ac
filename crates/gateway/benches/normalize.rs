//! The normalize phase's hot path: one request target made canonical (decoded once, dot segments
//! resolved, re-encoded) — a plain one, an encoded and dotted one, and one that is refused.

use criterion::{Criterion, criterion_group, criterion_main};
use invoiceguard_gateway::bench::canonical_path;

fn normalize(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    for (name, raw) in [
        ("plain", "/invoices/INV-1042/approve"),
        (
            "encoded-and-dotted",
            "/invoices/./INV%2D1042/lines/../approve//",
        ),
        ("refused", "/invoices/INV-1042%2F..%2F..%2Fsettings"),
    ] {
        let expected = canonical_path(raw);
        assert_eq!(expected.is_ok(), name != "refused", "{name}: {expected:?}");
        group.bench_function(name, |b| {
            b.iter(|| canonical_path(std::hint::black_box(raw)))
        });
    }
    group.finish();
}

criterion_group!(benches, normalize);
criterion_main!(benches);
