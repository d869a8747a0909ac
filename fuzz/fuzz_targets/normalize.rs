//! The normalize phase on any request line and headers hyper would pass on: never a panic, and
//! for every accepted request the path the policy sees is the path the upstream receives (the
//! properties are checked in `invoiceguard_gateway::fuzzing`).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    method: &'a str,
    target: &'a str,
    headers: Vec<(&'a [u8], &'a [u8])>,
}

fuzz_target!(|input: Input<'_>| {
    let _ = invoiceguard_gateway::fuzzing::canonical_path(input.target);
    let _ = invoiceguard_gateway::fuzzing::normalize_request(
        input.method,
        input.target,
        &input.headers,
    );
});
