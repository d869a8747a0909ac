//! A watermarked export's throughput against the same export passed through unchanged: a 16 MiB
//! answer in 64 KiB chunks (as the upstream pool hands them on), CSV (a trailing line) and JSON
//! (a first member), each hashed twice (SHA-256 of the bytes delivered and of the upstream's).
//! `make bench`; the figures are in docs/performance.md.
#![expect(
    clippy::expect_used,
    reason = "a bench without its runtime has nothing to measure"
)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZE: usize = 16 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn export(csv: bool) -> Vec<Bytes> {
    let mut text = String::with_capacity(SIZE + 128);
    if csv {
        text.push_str("id,partner_id,amount,currency,status,created_by\n");
        let mut n = 0u64;
        while text.len() < SIZE {
            text.push_str(&format!(
                "INV-{n},P-{},{}.00,EUR,approved,alice\n",
                n % 97,
                n % 10_000
            ));
            n += 1;
        }
    } else {
        text.push_str("{\"rows\":[");
        let mut n = 0u64;
        while text.len() < SIZE {
            text.push_str(&format!(
                "{{\"id\":\"INV-{n}\",\"amount\":{}.0}},",
                n % 10_000
            ));
            n += 1;
        }
        text.push_str("{}]}");
    }
    Bytes::from(text)
        .chunks(CHUNK)
        .map(Bytes::copy_from_slice)
        .collect()
}

fn watermark(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("export stream");
    for (name, csv) in [("csv", true), ("json", false)] {
        let chunks = export(csv);
        let bytes: usize = chunks.iter().map(Bytes::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(format!("{name} unchanged"), |b| {
            b.iter(|| {
                runtime.block_on(invoiceguard_gateway::bench::stream_export(
                    chunks.clone(),
                    false,
                    csv,
                ))
            });
        });
        group.bench_function(format!("{name} watermarked and hashed"), |b| {
            b.iter(|| {
                runtime.block_on(invoiceguard_gateway::bench::stream_export(
                    chunks.clone(),
                    true,
                    csv,
                ))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, watermark);
criterion_main!(benches);
