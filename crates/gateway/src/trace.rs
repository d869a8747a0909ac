//! W3C Trace Context: the client's `traceparent` is accepted (a malformed one is ignored and a
//! new trace started), the request gets its own span id, and the upstream receives the same
//! trace id with the gateway's span as parent — so a trace runs client → gateway → invoicing API.

use http::{HeaderMap, HeaderValue};

/// The `traceparent` header.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header (vendor data, passed on with a valid `traceparent`).
pub(crate) const TRACESTATE: &str = "tracestate";

/// One request's place in a trace.
#[derive(Debug, Clone)]
pub(crate) struct TraceContext {
    /// 32 lower-case hex digits.
    pub(crate) trace_id: String,
    /// The gateway's span for this request: 16 lower-case hex digits.
    pub(crate) span_id: String,
    /// Whether the trace is sampled (`01`).
    pub(crate) sampled: bool,
    /// The client's span, the parent of the gateway's (when the trace came from the client).
    pub(crate) parent_id: Option<String>,
    /// The client's `tracestate`, kept only with its valid `traceparent`.
    state: Option<HeaderValue>,
    /// Whether the trace came from the client (else the gateway started it).
    pub(crate) from_client: bool,
}

impl TraceContext {
    /// The request's context: the client's trace when its `traceparent` is valid, else a new one.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let span_id = random_hex(8);
        match headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse)
        {
            Some((trace_id, parent_id, sampled)) => Self {
                trace_id,
                span_id,
                sampled,
                parent_id: Some(parent_id),
                state: headers.get(TRACESTATE).cloned(),
                from_client: true,
            },
            None => Self {
                trace_id: random_hex(16),
                span_id,
                sampled: false,
                parent_id: None,
                state: None,
                from_client: false,
            },
        }
    }

    /// Takes the ids the span exporter gave the gateway's span (exported traces must match).
    pub(crate) fn adopt(&mut self, (trace_id, span_id, sampled): (String, String, bool)) {
        self.trace_id = trace_id;
        self.span_id = span_id;
        self.sampled = sampled;
    }

    /// Sets the upstream request's `traceparent` (and `tracestate`): this trace, the gateway's
    /// span as parent.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        headers.remove(TRACESTATE);
        let mut value = String::with_capacity(55);
        for part in [
            "00-",
            &self.trace_id,
            "-",
            &self.span_id,
            if self.sampled { "-01" } else { "-00" },
        ] {
            value.push_str(part);
        }
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(state) = &self.state {
            headers.insert(TRACESTATE, state.clone());
        }
    }
}

/// The trace id, parent id and sampled flag of a valid `traceparent`
/// (`00-<32 hex>-<16 hex>-<2 hex>`; ids not all zeros; a future version may carry more fields,
/// version `ff` is invalid).
fn parse(value: &str) -> Option<(String, String, bool)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    valid.then(|| (trace.to_owned(), parent.to_owned(), sampled))
}

/// Fills `out` from aws-lc's generator (a CSPRNG seeded from the system), drawing 512 bytes at a
/// time per thread: one draw serves the ids of about nine requests. The ids are identifiers, not
/// secrets. `false` when the generator fails.
fn random_bytes(out: &mut [u8]) -> bool {
    const POOL: usize = 512;
    thread_local! {
        static DRAWN: std::cell::RefCell<(usize, [u8; POOL])> =
            const { std::cell::RefCell::new((POOL, [0; POOL])) };
    }
    if out.len() > POOL {
        return aws_lc_rs::rand::fill(out).is_ok();
    }
    DRAWN.with_borrow_mut(|(used, pool)| {
        if POOL - *used < out.len() {
            if aws_lc_rs::rand::fill(pool).is_err() {
                return false;
            }
            *used = 0;
        }
        out.copy_from_slice(&pool[*used..*used + out.len()]);
        // What was handed out is not handed out again.
        pool[*used..*used + out.len()].fill(0);
        *used += out.len();
        true
    })
}

/// The time now, Unix seconds.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random (version 4) UUID, from the same generator as the trace ids (`Uuid::new_v4` asks the
/// kernel, a system call, for every id).
pub(crate) fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    if random_bytes(&mut bytes) {
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    } else {
        uuid::Uuid::new_v4().to_string()
    }
}

/// `bytes` random bytes as lower-case hex (never all zeros).
fn random_hex(bytes: usize) -> String {
    let mut buffer = [0u8; 16];
    let buffer = &mut buffer[..bytes.min(16)];
    if !random_bytes(buffer) || buffer.iter().all(|b| *b == 0) {
        // The system's generator failed: a time-derived id still keeps traces apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        for (i, byte) in buffer.iter_mut().enumerate() {
            *byte = (nanos >> ((i % 16) * 8)) as u8 | 1;
        }
    }
    hex::encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        // More than a pool's worth: ids stay distinct across refills.
        let ids: Vec<String> = (0..200).map(|_| super::random_uuid()).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(&parsed.to_string(), id);
        }
    }

    #[test]
    fn random_bytes_are_never_handed_out_twice() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut bytes = [0u8; 8];
            assert!(super::random_bytes(&mut bytes));
            assert!(seen.insert(bytes), "{bytes:?} drawn twice");
        }
        let mut large = [0u8; 600];
        assert!(super::random_bytes(&mut large));
        assert!(large.iter().any(|b| *b != 0));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_the_gateways_span() {
        let incoming = headers(&[
            (
                TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (TRACESTATE, "vendor=abc"),
        ]);
        let context = TraceContext::from_headers(&incoming);
        assert!(context.from_client);
        let mut upstream = headers(&[(TRACESTATE, "forged=1")]);
        context.inject(&mut upstream);
        let sent = upstream[TRACEPARENT].to_str().unwrap();
        assert_eq!(
            sent,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", context.span_id)
        );
        assert_eq!(context.span_id.len(), 16);
        assert!(
            context
                .span_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{sent}"
        );
        assert_ne!(
            context.span_id, "00f067aa0ba902b7",
            "the gateway's own span is the parent"
        );
        assert_eq!(upstream[TRACESTATE], "vendor=abc");
    }

    #[test]
    fn a_bad_traceparent_starts_a_new_trace_without_its_state() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let context =
                TraceContext::from_headers(&headers(&[(TRACEPARENT, bad), (TRACESTATE, "x=1")]));
            assert!(!context.from_client, "{bad}");
            assert_eq!(context.trace_id.len(), 32);
            let mut upstream = HeaderMap::new();
            context.inject(&mut upstream);
            assert!(upstream.get(TRACESTATE).is_none());
            assert!(upstream[TRACEPARENT].to_str().unwrap().ends_with("-00"));
        }
    }
}
