//! The authenticate phase's hot path: verifying a bearer JWT per signature algorithm (token cache
//! off), and a verified-token cache hit. Keys come from the real test IdP, started once.
#![expect(clippy::unwrap_used, reason = "a bench fails loudly at setup")]

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use invoiceguard_authn::{Authenticator, AuthnConfig, Credentials};
use invoiceguard_testkit::{Idp, TokenRequest};

fn config(issuer: &str, cache_entries: usize) -> AuthnConfig {
    serde_json::from_value(serde_json::json!({
        "issuer": issuer,
        "audience": ["urn:invoiceguard:invoicing-api"],
        "token_cache_entries": cache_entries,
    }))
    .unwrap()
}

fn verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let idp = runtime.block_on(Idp::start()).unwrap();
    let uncached = runtime
        .block_on(Authenticator::start(config(&idp.issuer, 0)))
        .unwrap();
    let cached = runtime
        .block_on(Authenticator::start(config(&idp.issuer, 10_000)))
        .unwrap();

    let mut group = c.benchmark_group("verify");
    for alg in ["ES256", "ES384", "EdDSA", "RS256", "PS256"] {
        let request = TokenRequest {
            alg: Some(alg),
            ..Default::default()
        };
        let token = runtime.block_on(idp.user_token("alice", request)).unwrap();
        let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        runtime
            .block_on(uncached.authenticate(Credentials {
                authorization: Some(&header),
                ..Default::default()
            }))
            .unwrap();
        group.bench_function(alg, |b| {
            b.to_async(&runtime).iter(|| async {
                uncached
                    .authenticate(Credentials {
                        authorization: Some(&header),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
            })
        });
    }
    let token = runtime
        .block_on(idp.user_token("alice", TokenRequest::default()))
        .unwrap();
    let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    runtime
        .block_on(cached.authenticate(Credentials {
            authorization: Some(&header),
            ..Default::default()
        }))
        .unwrap();
    group.bench_function("cache_hit", |b| {
        b.to_async(&runtime).iter(|| async {
            cached
                .authenticate(Credentials {
                    authorization: Some(&header),
                    ..Default::default()
                })
                .await
                .unwrap()
        })
    });
    group.finish();
    drop(idp);
}

criterion_group!(benches, verify);
criterion_main!(benches);
