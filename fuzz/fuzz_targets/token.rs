//! A client's `Authorization` header and the claims of a token: read before verification (the
//! bearer token, its header and `typ`, the issuer and subject it claims) and after (the principal
//! the claims make). Never a panic; every name in a principal safe to put in a header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = invoiceguard_authn::fuzzing::read_unverified(data);
    let _ = invoiceguard_authn::fuzzing::principal_from_claims(data);
});
