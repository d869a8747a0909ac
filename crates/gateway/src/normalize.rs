//! The normalize phase: one canonical path, so that the upstream receives exactly the path that
//! was authorized, and refusal of requests whose meaning another server could read differently.

use http::{HeaderMap, Method, header};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Characters re-encoded in a canonical path segment: everything but RFC 3986 unreserved
/// characters and the sub-delimiters, `:` and `@` that are safe in a segment (`;` is refused).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Headers that ask a server to run another method than the request line's: each would let the
/// upstream perform an operation other than the one authorized.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// A request path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CanonicalPath {
    /// The decoded segments, matched against routes.
    pub(crate) segments: Vec<String>,
    /// The canonical, percent-encoded path forwarded to the upstream, e.g. `/invoices/INV-1`.
    pub(crate) path: String,
}

/// Checks the request line and headers, and returns the canonical path.
pub(crate) fn request(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<CanonicalPath, String> {
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(format!("method `{method}` is not allowed"));
    }
    framing(headers)?;
    if let Some(name) = METHOD_OVERRIDES
        .iter()
        .find(|name| headers.contains_key(**name))
    {
        return Err(format!("header `{name}` is not allowed"));
    }
    canonical_path(path)
}

/// Refuses ambiguous body framing (RFC 9112 section 6.3): both `Content-Length` and
/// `Transfer-Encoding`, or several `Content-Length` values.
fn framing(headers: &HeaderMap) -> Result<(), String> {
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Err("more than one content-length".to_owned());
    }
    if lengths == 1 && headers.contains_key(header::TRANSFER_ENCODING) {
        return Err("both content-length and transfer-encoding".to_owned());
    }
    Ok(())
}

/// Decodes each segment once, refuses what could be read as another path (encoded `/` or `\`,
/// control characters, `;` parameters, invalid escapes or UTF-8, `..` above the root), drops
/// empty and `.` segments, resolves `..`, and encodes the result canonically.
pub(crate) fn canonical_path(raw: &str) -> Result<CanonicalPath, String> {
    if !raw.starts_with('/') {
        return Err("the request target must be an absolute path".to_owned());
    }
    let mut segments: Vec<String> = Vec::new();
    for raw_segment in raw.split('/') {
        let segment = decode_segment(raw_segment)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err("the path climbs above the root".to_owned());
                }
            }
            _ => segments.push(segment),
        }
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &segments {
        path.push('/');
        path.extend(utf8_percent_encode(segment, SEGMENT));
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(CanonicalPath { segments, path })
}

/// One decoded segment in the canonical encoding (what the upstream receives).
pub(crate) fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

fn decode_segment(raw: &str) -> Result<String, String> {
    if raw.contains(['\\', ';']) {
        return Err("`\\` and `;` are not allowed in the path".to_owned());
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "invalid percent-encoding in the path".to_owned())?;
            decoded.push(hex);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| "the path is not valid UTF-8".to_owned())?;
    if text
        .chars()
        .any(|c| c == '/' || c == '\\' || c == ';' || c.is_control())
    {
        return Err(
            "encoded `/`, `\\`, `;` or control characters are not allowed in the path".to_owned(),
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, String> {
        canonical_path(raw).map(|p| p.path)
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(path("/invoices").unwrap(), "/invoices");
        assert_eq!(path("//invoices///INV-1/").unwrap(), "/invoices/INV-1");
        assert_eq!(path("/invoices/./INV-1").unwrap(), "/invoices/INV-1");
        assert_eq!(path("/settings/../invoices").unwrap(), "/invoices");
        assert_eq!(
            path("/%69nvoices").unwrap(),
            "/invoices",
            "unreserved characters are decoded"
        );
        assert_eq!(
            path("/settings/%2e%2e/invoices").unwrap(),
            "/invoices",
            "encoded dots are dots"
        );
        assert_eq!(
            path("/partners/Acme%20Kft").unwrap(),
            "/partners/Acme%20Kft"
        );
        assert_eq!(path("/partners/%C3%A9").unwrap(), "/partners/%C3%A9");
        assert_eq!(path("/").unwrap(), "/");
        let p = canonical_path("/partners/Acme%20Kft").unwrap();
        assert_eq!(p.segments, ["partners", "Acme Kft"]);
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for raw in [
            "/invoices%2fINV-1",
            "/invoices%2FINV-1",
            "/invoices%5cINV-1",
            "/invoices\\INV-1",
            "/invoices/INV-1;x/approve",
            "/invoices/%3b",
            "/invoices/%00",
            "/invoices/%0d%0a",
            "/invoices/%zz",
            "/invoices/%4",
            "/invoices/%ff",
            "/../invoices",
            "/%2e%2e/invoices",
            "*",
            "invoices",
        ] {
            assert!(canonical_path(raw).is_err(), "{raw} was accepted");
        }
    }

    #[test]
    fn canonical_path_is_a_fixed_point() {
        for raw in [
            "/a/b",
            "/partners/Acme%20Kft",
            "/x/%C3%A9/y",
            "/a/b!$&'()*+,=:@",
        ] {
            let once = path(raw).unwrap();
            assert_eq!(path(&once).unwrap(), once, "{raw}");
        }
    }

    #[test]
    fn framing_and_method_overrides() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "3".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(request(&Method::POST, "/invoices", &headers).is_err());
        let mut headers = HeaderMap::new();
        headers.insert("x-http-method-override", "DELETE".parse().unwrap());
        assert!(request(&Method::POST, "/invoices", &headers).is_err());
        assert!(request(&Method::CONNECT, "/", &HeaderMap::new()).is_err());
        assert!(request(&Method::GET, "/invoices", &HeaderMap::new()).is_ok());
    }
}
