//! Tests of `head_guard.rs`.

use super::*;

fn verdict(stream: &str) -> Option<&'static str> {
    let whole = scan_in_pieces(stream.as_bytes(), usize::MAX).0;
    for piece in 1..8 {
        assert_eq!(
            scan_in_pieces(stream.as_bytes(), piece).0,
            whole,
            "in pieces of {piece}: {stream:?}"
        );
    }
    whole
}

#[test]
fn well_formed_requests_pass() {
    for stream in [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\na\nb\rcGET / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\na\nb\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nX-Content-Length: 5\r\nX-Transfer-Encoding: chunked\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\n\n\r\0binary\n",
    ] {
        assert_eq!(verdict(stream), None, "{stream:?}");
    }
}

#[test]
fn bare_line_ends_and_both_framings_are_refused() {
    for (stream, why) in [
        ("GET / HTTP/1.1\nHost: a\n\n", "bare LF"),
        (
            "GET / HTTP/1.1\r\nHost: a\nX-Invoiceguard-Roles: admin\r\n\r\n",
            "bare LF",
        ),
        ("GET / HTTP/1.1\r\nHost: a\r\n\n", "bare LF"),
        ("GET / HTTP/1.1\r\nX-A: b\rc\r\n\r\n", "bare CR"),
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both",
        ),
        (
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            "both",
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\nContent-Length: 48\r\n\r\n",
            "both",
        ),
        // After a body, the next head is checked too.
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\nHost: a\n\n",
            "bare LF",
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\nHost: a\n\n",
            "bare LF",
        ),
    ] {
        let found = verdict(stream).unwrap_or_else(|| panic!("{stream:?} passed"));
        assert!(found.contains(why), "{stream:?}: {found}");
    }
}

#[test]
fn the_refusing_byte_becomes_nul_and_nothing_before_it_changes() {
    let stream = b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n";
    let (why, seen) = scan_in_pieces(stream, 4);
    assert!(why.is_some());
    let at = stream.iter().position(|b| *b == b'\n').unwrap();
    let at = at + 1 + stream[at + 1..].iter().position(|b| *b == b'\n').unwrap();
    assert_eq!(seen[at], 0);
    assert_eq!(&seen[..at], &stream[..at]);
}

proptest::proptest! {
    /// However the stream is cut into reads, the verdict is the same, and a stream of heads
    /// with CRLF line ends only and bodies framed by their length is never refused.
    #[test]
    fn cutting_changes_nothing(
        bodies in proptest::collection::vec("[\\x00-\\xff]{0,20}", 1..4),
        piece in 1usize..40,
    ) {
        let mut stream = Vec::new();
        for body in &bodies {
            stream.extend_from_slice(
                format!("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            );
            stream.extend_from_slice(body.as_bytes());
        }
        proptest::prop_assert_eq!(scan_in_pieces(&stream, piece).0, None);
    }

    /// Any bytes: no panic, and the verdict does not depend on how they were cut.
    #[test]
    fn any_bytes(stream in proptest::collection::vec(proptest::num::u8::ANY, 0..200), piece in 1usize..50) {
        let whole = scan_in_pieces(&stream, usize::MAX).0;
        proptest::prop_assert_eq!(scan_in_pieces(&stream, piece).0, whole);
    }
}
