//! The normalize phase: one canonical path, so that the upstream receives exactly the path that
//! was authorized, and refusal of requests whose meaning another server could read differently.

use http::{HeaderMap, Method, Uri, Version, header};
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

/// Headers that ask a server to run another method, or serve another path, than the request
/// line's (method-override middleware; IIS, Symfony, Zend and Laminas URL rewriting; Envoy's and
/// nginx's original-path headers; the WebDAV-style destination of some frameworks): each would let
/// the upstream perform an operation other than the one authorized. `X-Forwarded-*` spellings
/// (`X-Forwarded-Uri`, `X-Forwarded-Path`, `X-Forwarded-Prefix`) are removed before forwarding
/// instead (see `upstream.rs`).
const OVERRIDES: [&str; 13] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-original-uri",
    "x-original-path",
    "x-rewrite-url",
    "x-override-url",
    "x-envoy-original-path",
    "x-http-destinationurl",
    "x-proxy-url",
    "x-rewrite-uri",
];

/// Characters that NFKC leaves alone but that read as `/`, `\\` or `.` (Unicode's confusables for
/// them): fraction slash, division slash, big solidus, reverse solidus operator, set minus, big
/// reverse solidus, combining long solidus overlay, and the ideographic full stops (which IDNA
/// maps to `.`). The fullwidth forms and the dot leaders are folded by NFKC, and refused for it.
const LOOK_ALIKES: [char; 9] = [
    '\u{2044}', '\u{2215}', '\u{29F8}', '\u{29F5}', '\u{2216}', '\u{29F9}', '\u{0338}', '\u{3002}',
    '\u{FF61}',
];

/// Query parameters (and form fields, `form_override.rs`) that method-override middleware reads
/// as the method (Rails, Laravel, Express `method-override`), compared after decoding and
/// ignoring case.
pub(crate) const QUERY_OVERRIDES: [&str; 2] = ["_method", "x-http-method-override"];

/// What `Connection` may name: only headers that are hop-by-hop anyway. A client naming an
/// end-to-end header there would have a proxy drop it on the way (RFC 9110 section 7.6.1).
const CONNECTION_OPTIONS: [&str; 8] = [
    "close",
    "keep-alive",
    "te",
    "upgrade",
    "http2-settings",
    "proxy-connection",
    "trailer",
    "transfer-encoding",
];

/// Why a request is refused before it is routed: each is a way one request could be read as two
/// different ones (by the gateway and by the upstream), or a way around the routes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("method `{0}` is not allowed")]
    Method(String),
    #[error("header `{0}` is not allowed")]
    OverrideHeader(String),
    #[error("query parameter `{0}` is not allowed")]
    OverrideQuery(String),
    #[error("more than one host header")]
    HostTwice,
    #[error("the host header is not a host")]
    HostInvalid,
    #[error("the request target's authority and the host header differ")]
    HostDiffers,
    #[error("the request target carries user information")]
    UserInfo,
    #[error("the host header is missing")]
    HostMissing,
    #[error("the connection header is not text")]
    ConnectionNotText,
    #[error("the connection header may name only hop-by-hop headers, not `{0}`")]
    ConnectionOption(String),
    #[error("more than one content-length")]
    LengthTwice,
    #[error("both content-length and transfer-encoding")]
    BothFramings,
    #[error("the request target must be an absolute path")]
    NotAbsolute,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("`\\` and `;` are not allowed in the path")]
    Separator,
    #[error("invalid percent-encoding in the path")]
    BadPercent,
    #[error("the path is not valid UTF-8")]
    NotUtf8,
    #[error("encoded `/`, `\\`, `;` or control characters are not allowed in the path")]
    EncodedSeparator,
    #[error("the path is percent-encoded twice")]
    EncodedTwice,
    #[error("the path holds a character that reads as `/`, `\\` or `.`")]
    LookAlike,
    #[error("the path is not in Unicode normalization form NFKC")]
    NotNfkc,
}

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
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Result<CanonicalPath, Refused> {
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(Refused::Method(method.to_string()));
    }
    framing(headers)?;
    host(uri, version, headers)?;
    connection(headers)?;
    // One pass over the request's few names, not a lookup of each override.
    if let Some(name) = headers
        .keys()
        .find(|name| OVERRIDES.contains(&name.as_str()))
    {
        return Err(Refused::OverrideHeader(name.to_string()));
    }
    if let Some(query) = uri.query() {
        query_overrides(query)?;
    }
    canonical_path(uri.path())
}

/// A host name without IPv6 brackets.
pub(crate) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

/// One host per request: a single valid `Host`, equal to the request target's authority when
/// both are sent (absolute-form on HTTP/1.1, `:authority` on HTTP/2), required on HTTP/1.1.
fn host(uri: &Uri, version: Version, headers: &HeaderMap) -> Result<(), Refused> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refused::HostTwice);
    }
    let host = match host {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.parse::<http::uri::Authority>().ok())
                .filter(|authority| authority.as_str().find('@').is_none())
                .ok_or(Refused::HostInvalid)?,
        ),
        None => None,
    };
    match (uri.authority(), host) {
        (Some(target), Some(host)) if !target.as_str().eq_ignore_ascii_case(host.as_str()) => {
            Err(Refused::HostDiffers)
        }
        (Some(target), _) if target.as_str().contains('@') => Err(Refused::UserInfo),
        (None, None) if version == Version::HTTP_11 => Err(Refused::HostMissing),
        _ => Ok(()),
    }
}

/// Refuses a `Connection` header that names anything but hop-by-hop headers.
fn connection(headers: &HeaderMap) -> Result<(), Refused> {
    for value in headers.get_all(header::CONNECTION) {
        let text = value.to_str().map_err(|_| Refused::ConnectionNotText)?;
        for option in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if !CONNECTION_OPTIONS
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(option))
            {
                return Err(Refused::ConnectionOption(option.to_owned()));
            }
        }
    }
    Ok(())
}

/// Refuses method-override query parameters.
fn query_overrides(query: &str) -> Result<(), Refused> {
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        let key = key.replace('+', " ");
        if let Some(name) = QUERY_OVERRIDES
            .iter()
            .find(|name| name.eq_ignore_ascii_case(key.trim()))
        {
            return Err(Refused::OverrideQuery(name.to_string()));
        }
    }
    Ok(())
}

/// Refuses ambiguous body framing (RFC 9112 section 6.3): both `Content-Length` and
/// `Transfer-Encoding`, or several `Content-Length` values.
fn framing(headers: &HeaderMap) -> Result<(), Refused> {
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Err(Refused::LengthTwice);
    }
    if lengths == 1 && headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(Refused::BothFramings);
    }
    Ok(())
}

/// Decodes each segment once, refuses what could be read as another path (encoded `/` or `\`,
/// control characters, `;` parameters, invalid escapes or UTF-8, `..` above the root), drops
/// empty and `.` segments, resolves `..`, and encodes the result canonically.
pub(crate) fn canonical_path(raw: &str) -> Result<CanonicalPath, Refused> {
    if !raw.starts_with('/') {
        return Err(Refused::NotAbsolute);
    }
    let mut segments: Vec<String> = Vec::new();
    for raw_segment in raw.split('/') {
        let segment = decode_segment(raw_segment)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(Refused::AboveRoot);
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

/// The properties the rest of the gateway relies on, for an accepted path: it is absolute,
/// without a trailing slash, empty or dot segments; the upstream parses the request line the
/// gateway writes back to exactly this path, and decodes it to exactly the segments that were
/// routed; and normalizing it again changes nothing. Checked by the unit properties below and by
/// the `normalize` fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn round_trip(canonical: &CanonicalPath) -> Result<(), String> {
    let path = &canonical.path;
    if !path.starts_with('/') || (path != "/" && path.ends_with('/')) {
        return Err(format!("{path:?} is not absolute, or ends with a slash"));
    }
    if path != "/"
        && path
            .split('/')
            .skip(1)
            .any(|segment| matches!(segment, "" | "." | ".."))
    {
        return Err(format!("{path:?} has an empty or dot segment"));
    }
    let uri: Uri = path
        .parse()
        .map_err(|e| format!("{path:?} is not a valid request target: {e}"))?;
    if uri.path() != path {
        return Err(format!(
            "the upstream would read {:?} for {path:?}",
            uri.path()
        ));
    }
    let again = canonical_path(path).map_err(|e| format!("{path:?} is refused: {e}"))?;
    if &again != canonical {
        return Err(format!("normalizing {path:?} again gives {:?}", again.path));
    }
    let decoded: Vec<String> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if let Some(segment) = canonical.segments.iter().find(|segment| {
        use unicode_normalization::UnicodeNormalization;
        still_encoded(segment)
            || !segment.nfkc().eq(segment.chars())
            || segment.contains(LOOK_ALIKES)
    }) {
        return Err(format!(
            "{segment:?} is encoded twice, not NFKC, or holds a look-alike of `/`, `\\` or `.`"
        ));
    }
    if decoded != canonical.segments {
        return Err(format!(
            "the upstream would decode {decoded:?}, the routes saw {:?}",
            canonical.segments
        ));
    }
    Ok(())
}

/// One decoded segment in the canonical encoding (what the upstream receives).
pub(crate) fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

fn decode_segment(raw: &str) -> Result<String, Refused> {
    if raw.contains(['\\', ';']) {
        return Err(Refused::Separator);
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
                .ok_or(Refused::BadPercent)?;
            decoded.push(hex);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| Refused::NotUtf8)?;
    if text
        .chars()
        .any(|c| c == '/' || c == '\\' || c == ';' || c.is_control())
    {
        return Err(Refused::EncodedSeparator);
    }
    if still_encoded(&text) {
        return Err(Refused::EncodedTwice);
    }
    if !text.is_ascii() {
        unicode_look_alikes(&text)?;
    }
    Ok(text)
}

/// Whether a decoded segment still holds a percent-encoding (`%` and two hex digits): an
/// upstream, or a framework under it, that decodes once more would read another path.
fn still_encoded(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Refuses a segment that Unicode compatibility normalization (NFKC) changes — fullwidth solidus,
/// one- and two-dot leaders, ligatures, and text in a decomposed form all do — or that holds a
/// character NFKC keeps but that reads as `/`, `\\` or `.`: an upstream that normalizes would
/// read another path, or another id, than the one authorized.
fn unicode_look_alikes(text: &str) -> Result<(), Refused> {
    use unicode_normalization::UnicodeNormalization;
    if text.contains(LOOK_ALIKES) {
        return Err(Refused::LookAlike);
    }
    if !text.nfkc().eq(text.chars()) {
        return Err(Refused::NotNfkc);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
