//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never in the product): the
//! normalize phase on a client's request line and headers, with the properties the rest of the
//! gateway relies on checked on every accepted request.
#![expect(
    clippy::panic,
    reason = "a fuzz target reports a broken property by panicking"
)]

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use crate::normalize;

/// Runs the normalize phase on a request that hyper accepted (method, target and headers as
/// parsed), and checks, for every request it accepts, that the path the policy sees is the
/// one the upstream receives (`normalize::round_trip`).
pub fn normalize_request(
    method: &str,
    target: &str,
    headers: &[(&[u8], &[u8])],
) -> Option<(Vec<String>, String)> {
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let uri: Uri = target.parse().ok()?;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_bytes(value).ok()?;
        map.append(name, value);
    }
    let canonical = normalize::request(&method, &uri, Version::HTTP_11, &map).ok()?;
    check(&canonical);
    Some((canonical.segments, canonical.path))
}

/// The canonical path of a raw request path, with the same checks.
pub fn canonical_path(raw: &str) -> Option<(Vec<String>, String)> {
    let canonical = normalize::canonical_path(raw).ok()?;
    check(&canonical);
    Some((canonical.segments, canonical.path))
}

fn check(canonical: &normalize::CanonicalPath) {
    if let Err(broken) = normalize::round_trip(canonical) {
        panic!("{broken}");
    }
}
