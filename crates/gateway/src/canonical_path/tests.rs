//! Tests of `canonical_path.rs`.

use super::*;

fn path(raw: &str) -> Result<String, Refused> {
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
    assert_eq!(
        path("/partners/100%25").unwrap(),
        "/partners/100%25",
        "a percent sign that encodes nothing stays"
    );
    assert_eq!(
        path("/partners/%E6%A0%AA%E5%BC%8F%E4%BC%9A%E7%A4%BE").unwrap(),
        "/partners/%E6%A0%AA%E5%BC%8F%E4%BC%9A%E7%A4%BE",
        "text already in NFKC passes"
    );
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
        "/invoices/%c0%ae%c0%ae/x",
        "/invoices/%e0%80%ae",
        "/invoices/%ed%a0%80",
        "/../invoices",
        "/%2e%2e/invoices",
        "/invoices/%252e%252e%252fsettings",
        "/invoices/%2541",
        "/invoices/INV-1%25%32%66x",
        "/invoices/%EF%BC%8Fsettings",
        "/invoices/%EF%BC%BCsettings",
        "/invoices/%EF%BC%8E%EF%BC%8E",
        "/invoices/%E2%80%A5",
        "/invoices/%E2%80%A4%E2%80%A4",
        "/invoices/%E2%81%84settings",
        "/invoices/%E2%88%95settings",
        "/invoices/%E2%A7%B5settings",
        "/invoices/%EF%B9%A8settings",
        "/invoices/%E3%80%82%E3%80%82",
        "/partners/e%CC%81",
        "/partners/%EF%AC%81",
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

fn check(method: Method, target: &str, headers: &[(&str, &str)]) -> Result<String, Refused> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let uri: Uri = target.parse().unwrap();
    request(&method, &uri, Version::HTTP_11, &map).map(|p| p.path)
}

const HOST: (&str, &str) = ("host", "gw.example");

#[test]
fn framing_and_overrides() {
    let both = [
        HOST,
        ("content-length", "3"),
        ("transfer-encoding", "chunked"),
    ];
    let refused = |headers: &[(&str, &str)]| check(Method::POST, "/invoices", headers);
    assert_eq!(refused(&both), Err(Refused::BothFramings));
    let twice = [HOST, ("content-length", "3"), ("content-length", "3")];
    assert_eq!(refused(&twice), Err(Refused::LengthTwice));
    for name in OVERRIDES {
        let err = refused(&[HOST, (name, "DELETE")]);
        assert_eq!(err, Err(Refused::OverrideHeader(name.to_owned())));
    }
    for query in [
        "_method=DELETE",
        "a=1&_METHOD=delete",
        "%5Fmethod=DELETE",
        "x-http-method-override=PUT",
    ] {
        let target = format!("/invoices/INV-1?{query}");
        let err = check(Method::POST, &target, &[HOST]).unwrap_err();
        assert!(matches!(err, Refused::OverrideQuery(_)), "{query}: {err}");
    }
    assert!(check(Method::GET, "/invoices?method=x&_methods=1", &[HOST]).is_ok());
    let method = |m: Method| Err(Refused::Method(m.to_string()));
    assert_eq!(
        check(Method::CONNECT, "/", &[HOST]),
        method(Method::CONNECT)
    );
    assert_eq!(check(Method::TRACE, "/", &[HOST]), method(Method::TRACE));
    assert_eq!(
        check(Method::GET, "/invoices", &[HOST]).unwrap(),
        "/invoices"
    );
}

#[test]
fn one_host() {
    let get = |headers: &[(&str, &str)]| check(Method::GET, "/invoices", headers);
    assert_eq!(get(&[]), Err(Refused::HostMissing));
    assert_eq!(get(&[HOST, ("host", "other")]), Err(Refused::HostTwice));
    assert_eq!(get(&[("host", "a b")]), Err(Refused::HostInvalid));
    assert_eq!(
        get(&[("host", "user@gw.example")]),
        Err(Refused::HostInvalid)
    );
    assert!(check(Method::GET, "http://gw.example/invoices", &[HOST]).is_ok());
    assert!(check(Method::GET, "http://GW.example/invoices", &[HOST]).is_ok());
    assert_eq!(
        check(Method::GET, "http://other.example/invoices", &[HOST]),
        Err(Refused::HostDiffers)
    );
    assert_eq!(
        check(Method::GET, "http://u@gw.example/invoices", &[]),
        Err(Refused::UserInfo)
    );
}

#[test]
fn connection_names_only_hop_by_hop_headers() {
    assert!(
        check(
            Method::GET,
            "/invoices",
            &[HOST, ("connection", "keep-alive")]
        )
        .is_ok()
    );
    assert!(
        check(
            Method::GET,
            "/invoices",
            &[HOST, ("connection", "Close, TE")]
        )
        .is_ok()
    );
    for named in [
        "x-invoiceguard-subject",
        "authorization",
        "content-length",
        "keep-alive, x-request-id",
        "cookie",
    ] {
        let err = check(Method::GET, "/invoices", &[HOST, ("connection", named)]);
        assert!(matches!(err, Err(Refused::ConnectionOption(_))), "{named}");
    }
}

/// Pieces a hostile path is made of: encodings of `.`, `/`, `\`, `;` and `%` in both cases,
/// overlong and invalid UTF-8, NUL, route names and ids.
const PIECES: [&str; 34] = [
    "",
    "%252f",
    "%2541",
    "%EF%BC%8F",
    "%E2%80%A5",
    "%E2%81%84",
    "e%CC%81",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2e",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    ";",
    "%3b",
    "%25",
    "%252e",
    "%c0%ae",
    "%ff",
    "%00",
    "%",
    "%zz",
    "%41",
    "a%20b",
    "%C3%A9",
    "invoices",
    "INV-1",
    "approve",
    "settings",
    "~!$&'()*+,=:@",
];

fn hostile_path() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    proptest::collection::vec(
        (0..PIECES.len(), 0..PIECES.len()).prop_map(|(a, b)| format!("{}{}", PIECES[a], PIECES[b])),
        0..8,
    )
    .prop_map(|segments| format!("/{}", segments.join("/")))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The path the policy sees is the path the upstream receives, for every path the
    /// gateway accepts; the others are refused without a panic.
    #[test]
    fn the_routed_path_is_the_forwarded_path(raw in hostile_path()) {
        if let Ok(canonical) = canonical_path(&raw) {
            proptest::prop_assert_eq!(round_trip(&canonical), Ok(()));
            proptest::prop_assert!(!canonical.segments.iter().any(|s| s == "." || s == ".."));
        }
    }

    /// Any printable request path: accepted ones keep the property too.
    #[test]
    fn any_printable_path(raw in "/[!-~]{0,40}") {
        if let Ok(canonical) = canonical_path(&raw) {
            proptest::prop_assert_eq!(round_trip(&canonical), Ok(()));
        }
    }

    /// A segment that still decodes to something after one decode is refused, whatever
    /// it encodes.
    #[test]
    fn twice_encoded_segments_are_refused(
        before in hostile_path(),
        byte in proptest::num::u8::ANY,
        upper in proptest::bool::ANY,
    ) {
        let escape = if upper { format!("%25{byte:02X}") } else { format!("%25{byte:02x}") };
        let raw = format!("{before}/a{escape}b");
        proptest::prop_assert!(canonical_path(&raw).is_err(), "{} was accepted", raw);
    }

    /// Any segment of any Unicode text: an accepted one is NFKC-stable and holds no
    /// look-alike of a separator (checked by `round_trip`).
    #[test]
    fn any_unicode_segment(text in "\\PC{0,12}") {
        let raw = format!("/partners/{}", encode_segment(&text));
        if let Ok(canonical) = canonical_path(&raw) {
            proptest::prop_assert_eq!(round_trip(&canonical), Ok(()));
        }
    }

    /// A path with an encoded slash, backslash or `;` anywhere is refused: no segment can
    /// be read as two by the upstream.
    #[test]
    fn encoded_separators_are_refused(
        before in hostile_path(),
        separator in proptest::sample::select(vec!["%2f", "%2F", "%5c", "%5C", "%3b", "%3B"]),
        after in "[a-z]{0,5}",
    ) {
        let raw = format!("{before}{separator}{after}");
        proptest::prop_assert!(canonical_path(&raw).is_err(), "{} was accepted", raw);
    }
}
