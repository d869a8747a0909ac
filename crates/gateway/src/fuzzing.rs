//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never in the product): the
//! normalize phase on a client's request line and headers, with the properties the rest of the
//! gateway relies on checked on every accepted request.
#![expect(
    clippy::panic,
    reason = "a fuzz target reports a broken property by panicking"
)]

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use crate::canonical_path;

/// Runs the normalize phase on a request that hyper accepted (method, target and headers as
/// parsed), and checks, for every request it accepts, that the path the policy sees is the
/// one the upstream receives (`canonical_path::round_trip`).
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
    let canonical = canonical_path::request(&method, &uri, Version::HTTP_11, &map).ok()?;
    check(&canonical);
    Some((canonical.segments, canonical.path))
}

/// The canonical path of a raw request path, with the same checks.
pub fn canonical_path(raw: &str) -> Option<(Vec<String>, String)> {
    let canonical = canonical_path::canonical_path(raw).ok()?;
    check(&canonical);
    Some((canonical.segments, canonical.path))
}

fn check(canonical: &canonical_path::CanonicalPath) {
    if let Err(broken) = canonical_path::round_trip(canonical) {
        panic!("{broken}");
    }
}

/// The head guard on any client byte stream, cut into reads of `piece` bytes: never a panic, the
/// same verdict however the stream is cut, and a refusal changes at most one byte (to NUL).
pub fn head_guard(stream: &[u8], piece: usize) -> Option<&'static str> {
    let (whole, seen_whole) = crate::head_guard::scan_in_pieces(stream, usize::MAX);
    let (cut, seen_cut) = crate::head_guard::scan_in_pieces(stream, piece);
    if whole != cut || seen_whole != seen_cut {
        panic!("cut into reads of {piece} bytes, the verdict {cut:?} differs from {whole:?}");
    }
    let changed: Vec<usize> = (0..stream.len())
        .filter(|&i| stream[i] != seen_whole[i])
        .collect();
    match (whole, changed.as_slice()) {
        // (A refusing byte that was a NUL already is not changed.)
        (None | Some(_), []) => {}
        (Some(_), [at]) if seen_whole[*at] == 0 => {}
        _ => panic!("verdict {whole:?} changed the bytes at {changed:?}"),
    }
    whole
}
