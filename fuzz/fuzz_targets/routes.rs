//! Route matching on the baseline `routes.toml`: any method and canonical path finds at most one
//! route, of that method (HEAD: of GET), whose template has as many segments as the path, and whose resource id
//! is one of the path's segments or fixed by the route.
#![no_main]

mod baseline;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    method: u8,
    path: &'a str,
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

fuzz_target!(|input: Input<'_>| {
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    let Some((segments, _)) = invoiceguard_gateway::fuzzing::canonical_path(input.path) else {
        return;
    };
    let Some(matched) = baseline::engine().routes().find(method, &segments) else {
        return;
    };
    // HEAD is decided as the GET of the same path.
    let decided_as = if method == "HEAD" { "GET" } else { method };
    assert_eq!(matched.route.method, decided_as);
    let template: Vec<&str> = matched
        .route
        .template
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(template.len(), segments.len(), "{}", matched.route.template);
    for (literal, segment) in template.iter().zip(&segments) {
        if !literal.starts_with('{') {
            assert_eq!(literal, segment, "{}", matched.route.template);
        }
    }
    assert!(
        matched.resource_id.is_empty()
            || segments.contains(&matched.resource_id)
            || !matched.route.template.contains('{'),
        "{} gave resource id {:?}",
        matched.route.template,
        matched.resource_id
    );
});
