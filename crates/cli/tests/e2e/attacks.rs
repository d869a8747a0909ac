//! The attack corpus (docs/security.md lists each case and why): raw requests a hostile client
//! could send, each asserting what the client got and what — if anything — the upstream received.
//! HTTP/1.1 cases are written byte by byte on a TCP socket, HTTP/2 ones frame by frame, so that no
//! client library tidies them up first.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// The gateway's limits in these tests: small, so that each is quick to reach.
const LISTEN: &str = "header_timeout_ms = 1000\nbody_timeout_ms = 700\nbody_deadline_ms = 1500\n";
const LIMITS: &str = "\n[limits]\nmax_body_bytes = 4096\n";

/// A gateway with `listen` and `limits` lines, in front of the example API; alice's token and
/// the gateway's address.
async fn attack_world(listen: &str, limits: &str) -> (World, String, String) {
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    let text = format!(
        "{}{limits}\n",
        sections(&idp.issuer, &upstream.url(), listen)
    );
    let gateway = GatewayProcess::start(Path::new(BINARY), &text, false)
        .await
        .unwrap();
    let world = World {
        idp,
        upstream,
        gateway,
    };
    let alice = world.token("alice").await;
    let host = world.gateway.url.trim_start_matches("http://").to_owned();
    (world, alice, host)
}

/// A raw request template with its `{host}` and `{token}` filled in.
fn fill(template: &str, host: &str, token: &str) -> String {
    template.replace("{host}", host).replace("{token}", token)
}

/// What came back on a raw connection.
struct Answer {
    /// The status of the first response, 0 when the connection closed without one.
    status: u16,
    /// Everything read, as text.
    text: String,
    /// Everything read.
    bytes: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

/// Writes `bytes`, then reads until the gateway closes the connection or `wait` passes.
async fn exchange(address: &str, bytes: &[u8], wait: Duration) -> Answer {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut read = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buffer = [0u8; 16 * 1024];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => read.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&read).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        text,
        bytes: read,
    }
}

/// A header of a request the upstream journaled (headers are `[name, value]` pairs), or "".
fn journaled<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
        .unwrap_or_default()
}

/// What the case expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused by the gateway with this status and a problem document; nothing forwarded.
    Problem(u16),
    /// Refused by the HTTP layer before the gateway read it (a bare status, connection closed);
    /// nothing forwarded.
    Bare(u16),
    /// Forwarded, and the upstream received exactly this request target.
    Forwarded(&'static str),
}

struct Case {
    name: &'static str,
    /// The request; `{host}` and `{token}` are filled in.
    raw: String,
    expect: Expect,
}

fn case(name: &'static str, raw: &str, expect: Expect) -> Case {
    Case {
        name,
        raw: raw.to_owned(),
        expect,
    }
}

/// `GET target` as alice, with `extra` header lines.
fn get_as_alice(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {{token}}\r\n{extra}Connection: close\r\n\r\n"
    )
}

fn corpus() -> Vec<Case> {
    use Expect::{Bare, Forwarded, Problem};
    let body = r#"{"partner_id":"P-1","lines":[]}"#;
    let post = |headers: &str, rest: &str| {
        format!(
            "POST /invoices HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {{token}}\r\nContent-Type: application/json\r\n{headers}\r\n{rest}"
        )
    };
    vec![
        // Paths: one canonical form for the policy and the upstream, or 400.
        case(
            "dot segments",
            &get_as_alice("/invoices/./INV-1/x/..", ""),
            Forwarded("/invoices/INV-1"),
        ),
        case(
            "duplicate and trailing slashes",
            &get_as_alice("//invoices///INV-1/", ""),
            Forwarded("/invoices/INV-1"),
        ),
        case(
            "encoded unreserved characters",
            &get_as_alice("/%69nvoices/INV%2d1", ""),
            Forwarded("/invoices/INV-1"),
        ),
        case(
            "encoded dot segments climb to another route",
            &get_as_alice("/invoices/%2e%2e/settings", ""),
            Problem(403),
        ),
        case(
            "mixed-case encoded dots",
            &get_as_alice("/invoices/INV-1/%2E%2e/%2e%2E/settings", ""),
            Problem(403),
        ),
        case(
            "encoded slash",
            &get_as_alice("/invoices%2fINV-1", ""),
            Problem(400),
        ),
        case(
            "encoded backslash",
            &get_as_alice("/invoices/INV-1%5c..%5csettings", ""),
            Problem(400),
        ),
        case(
            "backslash",
            &get_as_alice("/invoices\\INV-1", ""),
            Problem(400),
        ),
        case(
            "overlong UTF-8 dots",
            &get_as_alice("/invoices/%c0%ae%c0%ae/settings", ""),
            Problem(400),
        ),
        case(
            "invalid percent-encoding",
            &get_as_alice("/invoices/%zz", ""),
            Problem(400),
        ),
        case(
            "truncated percent-encoding",
            &get_as_alice("/invoices/INV-1%2", ""),
            Problem(400),
        ),
        case(
            "encoded NUL",
            &get_as_alice("/invoices/INV-1%00.json", ""),
            Problem(400),
        ),
        case(
            "path parameter",
            &get_as_alice("/invoices/INV-1;jsessionid=x", ""),
            Problem(400),
        ),
        case(
            "double encoding: an upstream that decodes again reads ../settings",
            &get_as_alice("/invoices/%252e%252e%252fsettings", ""),
            Problem(400),
        ),
        case(
            "double encoding of an ordinary character",
            &get_as_alice("/invoices/INV%252d1", ""),
            Problem(400),
        ),
        case(
            "fullwidth solidus (NFKC: /)",
            &get_as_alice("/invoices/INV-1%EF%BC%8F..%EF%BC%8Fsettings", ""),
            Problem(400),
        ),
        case(
            "two dot leader (NFKC: ..)",
            &get_as_alice("/invoices/%E2%80%A5/settings", ""),
            Problem(400),
        ),
        case(
            "one dot leaders (NFKC: ..)",
            &get_as_alice("/invoices/%E2%80%A4%E2%80%A4/settings", ""),
            Problem(400),
        ),
        case(
            "fullwidth full stops (NFKC: ..)",
            &get_as_alice("/invoices/%EF%BC%8E%EF%BC%8E/settings", ""),
            Problem(400),
        ),
        case(
            "fraction slash",
            &get_as_alice("/invoices/INV-1%E2%81%84settings", ""),
            Problem(400),
        ),
        case(
            "division slash",
            &get_as_alice("/invoices/INV-1%E2%88%95settings", ""),
            Problem(400),
        ),
        case(
            "small reverse solidus (NFKC: \\)",
            &get_as_alice("/invoices/INV-1%EF%B9%A8settings", ""),
            Problem(400),
        ),
        case(
            "an id in decomposed form (NFKC composes it)",
            &get_as_alice("/invoices/INV-e%CC%81", ""),
            Problem(400),
        ),
        case(
            "climbing above the root",
            &get_as_alice("/../invoices/INV-1", ""),
            Problem(400),
        ),
        case(
            "another case is another route",
            &get_as_alice("/INVOICES/INV-1", ""),
            Problem(403),
        ),
        case(
            "lower-case method is another method",
            &get_as_alice("/invoices/INV-1", "").replacen("GET", "get", 1),
            Problem(403),
        ),
        // Request-target forms and hosts.
        case(
            "absolute-form with the same host",
            &get_as_alice("http://{host}/invoices/INV-1", ""),
            Forwarded("/invoices/INV-1"),
        ),
        case(
            "absolute-form naming another host",
            &get_as_alice("http://upstream.internal/invoices/INV-1", ""),
            Problem(400),
        ),
        case(
            "absolute-form with user information",
            &get_as_alice("http://admin@{host}/invoices/INV-1", ""),
            Problem(400),
        ),
        case(
            "authority-form (CONNECT)",
            "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
            Problem(400),
        ),
        case(
            "asterisk-form",
            "OPTIONS * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
            Problem(400),
        ),
        case(
            "TRACE",
            &get_as_alice("/invoices", "").replacen("GET", "TRACE", 1),
            Problem(400),
        ),
        case(
            "two Host headers",
            &get_as_alice("/invoices/INV-1", "Host: upstream.internal\r\n"),
            Problem(400),
        ),
        case(
            "no Host header",
            "GET /invoices/INV-1 HTTP/1.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
            Problem(400),
        ),
        // Another operation than the one authorized.
        case(
            "X-HTTP-Method-Override",
            &get_as_alice("/invoices/INV-1", "X-HTTP-Method-Override: DELETE\r\n"),
            Problem(400),
        ),
        case(
            "X-Method-Override",
            &get_as_alice("/invoices/INV-1", "X-Method-Override: DELETE\r\n"),
            Problem(400),
        ),
        case(
            "X-Original-URL",
            &get_as_alice("/invoices/INV-1", "X-Original-URL: /settings\r\n"),
            Problem(400),
        ),
        case(
            "X-Rewrite-URL",
            &get_as_alice("/invoices/INV-1", "X-Rewrite-URL: /settings\r\n"),
            Problem(400),
        ),
        case(
            "X-Override-URL",
            &get_as_alice("/invoices/INV-1", "X-Override-URL: /settings\r\n"),
            Problem(400),
        ),
        case(
            "X-Original-URI",
            &get_as_alice("/invoices/INV-1", "X-Original-URI: /settings\r\n"),
            Problem(400),
        ),
        case(
            "X-Envoy-Original-Path",
            &get_as_alice("/invoices/INV-1", "X-Envoy-Original-Path: /settings\r\n"),
            Problem(400),
        ),
        // One credential per request.
        case(
            "two Authorization headers",
            &get_as_alice(
                "/invoices/INV-1",
                "Authorization: Bearer forged.token.here\r\n",
            ),
            Problem(400),
        ),
        case(
            "two Authorization headers, the forged one first",
            "GET /invoices/INV-1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer forged.token.here\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
            Problem(400),
        ),
        case(
            "a bearer token and an API key",
            &get_as_alice("/invoices/INV-1", "X-Api-Key: some-key\r\n"),
            Problem(400),
        ),
        case(
            "two API keys",
            "GET /invoices/INV-1 HTTP/1.1\r\nHost: {host}\r\nX-Api-Key: a\r\nX-Api-Key: b\r\nConnection: close\r\n\r\n",
            Problem(400),
        ),
        case(
            "_method in a urlencoded form body",
            "POST /invoices HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\nConnection: close\r\n\r\npartner_id=P-1&_method=DELETE",
            Problem(400),
        ),
        case(
            "encoded _method in a chunked form body, the name cut between chunks",
            "POST /invoices HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\na=1&%5\r\n9\r\nFmethod=P\r\n2\r\nUT\r\n0\r\n\r\n",
            Problem(400),
        ),
        case(
            "_method as a multipart form field",
            "POST /invoices HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 74\r\nConnection: close\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n",
            Problem(400),
        ),
        case(
            "_method query parameter",
            &get_as_alice("/invoices/INV-1?_method=DELETE", ""),
            Problem(400),
        ),
        case(
            "encoded _method query parameter",
            &get_as_alice("/invoices/INV-1?a=1&%5Fmethod=PUT", ""),
            Problem(400),
        ),
        // Framing: one reading of where a request ends, or refused.
        case(
            "Content-Length and Transfer-Encoding",
            &post(
                "Content-Length: 48\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nGET /settings HTTP/1.1\r\nHost: {host}\r\n\r\n",
            ),
            Bare(400),
        ),
        case(
            "Transfer-Encoding and Content-Length",
            &post(
                "Transfer-Encoding: chunked\r\nContent-Length: 48\r\n",
                "0\r\n\r\nGET /settings HTTP/1.1\r\nHost: {host}\r\n\r\n",
            ),
            Bare(400),
        ),
        case(
            "Transfer-Encoding identity, chunked with a Content-Length",
            &post(
                "Transfer-Encoding: identity, chunked\r\nContent-Length: 48\r\n",
                "0\r\n\r\nGET /settings HTTP/1.1\r\nHost: {host}\r\n\r\n",
            ),
            Bare(400),
        ),
        case(
            "Content-Length and Transfer-Encoding in lower case, a length of 0",
            &post(
                "content-length: 0\r\ntransfer-encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            Bare(400),
        ),
        case(
            "two different Content-Lengths",
            &post("Content-Length: 2\r\nContent-Length: 40\r\n", body),
            Bare(400),
        ),
        case(
            "two equal Content-Lengths",
            &post("Content-Length: 31\r\nContent-Length: 31\r\n", body),
            Forwarded("/invoices"),
        ),
        case(
            "Content-Length list",
            &post("Content-Length: 31, 31\r\n", body),
            Bare(400),
        ),
        case(
            "signed Content-Length",
            &post("Content-Length: +31\r\n", body),
            Bare(400),
        ),
        case(
            "Transfer-Encoding not ending in chunked",
            &post("Transfer-Encoding: chunked, identity\r\n", body),
            Bare(400),
        ),
        case(
            "unknown Transfer-Encoding",
            &post("Transfer-Encoding: xchunked\r\n", body),
            Bare(400),
        ),
        case(
            "space before the colon",
            &post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            Bare(400),
        ),
        case(
            "obs-fold",
            &get_as_alice("/invoices/INV-1", "X-Note: one\r\n two\r\n"),
            Bare(400),
        ),
        case(
            "NUL in a header value",
            &get_as_alice("/invoices/INV-1", "X-Note: a\0b\r\n"),
            Bare(400),
        ),
        case(
            "control character in a header name",
            &get_as_alice("/invoices/INV-1", "X-No\x01te: a\r\n"),
            Bare(400),
        ),
        case(
            "a whole request with bare LF line ends",
            "GET /invoices/INV-1 HTTP/1.1\nHost: {host}\nAuthorization: Bearer {token}\nConnection: close\n\n",
            Bare(400),
        ),
        case(
            "a header split by a bare LF",
            &get_as_alice(
                "/invoices/INV-1",
                "X-Note: a\nX-Invoiceguard-Roles: admin\r\n",
            ),
            Bare(400),
        ),
        case(
            "a bare LF ending the head",
            "GET /invoices/INV-1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\n",
            Bare(400),
        ),
        case(
            "a bare LF after the request line",
            "GET /invoices/INV-1 HTTP/1.1\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
            Bare(400),
        ),
        case(
            "a bare CR ending a header",
            &get_as_alice("/invoices/INV-1", "X-Note: a\rX-B: c\r\n"),
            Bare(400),
        ),
        case(
            "bare LF line ends",
            "GET /invoices/INV-1 HTTP/1.1\nHost: {host}\nAuthorization: Bearer {token}\nX-A: b\rc\n\n",
            Bare(400),
        ),
        // Hop-by-hop tricks and identity headers.
        case(
            "Connection naming the identity header",
            &get_as_alice("/invoices/INV-1", "Connection: x-invoiceguard-subject\r\n"),
            Problem(400),
        ),
        case(
            "Connection naming Authorization",
            &get_as_alice(
                "/invoices/INV-1",
                "Connection: keep-alive, authorization\r\n",
            ),
            Problem(400),
        ),
        case(
            "Connection naming Content-Length",
            &post("Content-Length: 31\r\nConnection: content-length\r\n", body),
            Problem(400),
        ),
        // Sizes.
        case(
            "oversized header",
            &get_as_alice(
                "/invoices/INV-1",
                &format!("X-Big: {}\r\n", "a".repeat(80 * 1024)),
            ),
            Bare(431),
        ),
        case(
            "too many headers",
            &get_as_alice("/invoices/INV-1", &"X-Many: 1\r\n".repeat(120)),
            Bare(431),
        ),
        case(
            "declared body over the limit",
            &post("Content-Length: 5000\r\n", &"a".repeat(5000)),
            Problem(413),
        ),
        case(
            "chunked body over the limit",
            &post(
                "Transfer-Encoding: chunked\r\n",
                &format!("1388\r\n{}\r\n0\r\n\r\n", "a".repeat(5000)),
            ),
            Problem(413),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attack_corpus_is_refused_or_canonicalized() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let mut forwarded = world.upstream.journal().await.unwrap().len();
    let mut failures = Vec::new();
    let mut malformed_before = 0;
    for case in corpus() {
        let raw = fill(&case.raw, &host, &alice);
        let answer = exchange(&host, raw.as_bytes(), Duration::from_secs(3)).await;
        let journal = world.upstream.journal().await.unwrap();
        let received: Vec<&str> = journal[forwarded..]
            .iter()
            .map(|entry| entry["target"].as_str().unwrap_or_default())
            .collect();
        let outcome = match case.expect {
            Expect::Forwarded(target) => {
                let subject = journal
                    .last()
                    .map(|entry| journaled(entry, "x-invoiceguard-subject"));
                (answer.status != 0
                    && answer.header("content-type") != Some("application/problem+json")
                    && received == [target]
                    && subject == Some("alice"))
                .then_some(())
                .ok_or_else(|| format!("status {}, upstream received {received:?}", answer.status))
            }
            Expect::Problem(status) => {
                let problem: Value = serde_json::from_str(answer.body()).unwrap_or_default();
                let id = answer.header("x-request-id").unwrap_or_default();
                (answer.status == status
                    && answer.header("content-type") == Some("application/problem+json")
                    && !id.is_empty()
                    && problem["request_id"] == id
                    && received.is_empty())
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "status {}, upstream received {received:?}: {}",
                        answer.status,
                        answer.text.chars().take(300).collect::<String>()
                    )
                })
            }
            Expect::Bare(status) => (answer.status == status && received.is_empty())
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "status {}, upstream received {received:?}: {}",
                        answer.status,
                        answer.text.chars().take(300).collect::<String>()
                    )
                }),
        };
        // The HTTP layer's event is written once the connection is closed: wait a little.
        let mut malformed = malformed_before;
        for _ in 0..60 {
            malformed = world
                .gateway
                .audit_events()
                .iter()
                .filter(|event| event["decision"]["reason"] == "malformed")
                .count();
            if malformed > malformed_before || !matches!(case.expect, Expect::Bare(_)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let outcome = outcome.and_then(|()| match case.expect {
            Expect::Bare(_) if malformed != malformed_before + 1 => {
                Err("no `malformed` audit event".to_owned())
            }
            _ => Ok(()),
        });
        malformed_before = malformed;
        if let Err(why) = outcome {
            failures.push(format!(
                "{}: expected {:?}, got {why}",
                case.name, case.expect
            ));
        }
        forwarded = journal.len();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every refusal is in the audit trail: the gateway's with its request id, the HTTP layer's as
    // a `malformed` event from the client's address.
    let events = world.gateway.audit_events();
    let bare = corpus()
        .iter()
        .filter(|case| matches!(case.expect, Expect::Bare(_)))
        .count();
    let malformed: Vec<&Value> = events
        .iter()
        .filter(|event| event["decision"]["reason"] == "malformed")
        .collect();
    assert_eq!(malformed.len(), bare, "{malformed:?}");
    assert!(malformed.iter().all(|event| {
        event["source"]["ip"] == "127.0.0.1"
            && event["outcome"]["status"]
                .as_u64()
                .is_some_and(|s| s == 400 || s == 431)
    }));
    // Each event has the status its client got: as many 431s as oversized heads.
    let oversized = corpus()
        .iter()
        .filter(|case| matches!(case.expect, Expect::Bare(431)))
        .count();
    let recorded_431 = malformed
        .iter()
        .filter(|event| event["outcome"]["status"] == 431)
        .count();
    assert_eq!(recorded_431, oversized);
    let too_large = events
        .iter()
        .filter(|event| event["outcome"]["status"] == 413)
        .count();
    assert_eq!(too_large, 2);
    // The head guard says why it refused: each bare line end and each double framing.
    let said = |why: &str| {
        malformed
            .iter()
            .filter(|event| {
                event["decision"]["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.contains(why))
            })
            .count()
    };
    assert!(said("bare LF") >= 4, "{malformed:?}");
    assert_eq!(said("both content-length and transfer-encoding"), 4);
    assert!(
        !events
            .iter()
            .any(|event| event["request"]["path"] == "/settings" && event["actor"].is_null()),
        "a smuggled request was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_identity_headers_are_the_gateways_alone() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let forged = "X-Invoiceguard-Subject: dave\r\nx-invoiceguard-roles: admin\r\nX-INVOICEGUARD-MFA: false\r\nX-Invoiceguard-Anything: 1\r\nX-Request-Id: chosen\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\nX-Forwarded-Prefix: /admin\r\nX-Real-IP: 10.0.0.1\r\n";
    let raw = fill(&get_as_alice("/invoices/INV-1", forged), &host, &alice);
    let answer = exchange(&host, raw.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let journal = world.upstream.journal().await.unwrap();
    let entry = journal.last().unwrap();
    let headers = |name: &str| journaled(entry, name);
    assert_eq!(headers("x-invoiceguard-subject"), "alice");
    assert_eq!(headers("x-invoiceguard-roles"), "invoicing");
    assert_eq!(headers("x-invoiceguard-mfa"), "true");
    let subjects = entry["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == "x-invoiceguard-subject")
        .count();
    assert_eq!(subjects, 1);
    assert_eq!(
        headers("x-request-id"),
        answer.header("x-request-id").unwrap()
    );
    assert_eq!(headers("x-forwarded-for"), "127.0.0.1");
    for gone in [
        "x-invoiceguard-anything",
        "forwarded",
        "x-forwarded-prefix",
        "x-real-ip",
        "authorization",
    ] {
        assert_eq!(headers(gone), "", "{gone} reached the upstream");
    }
    // No credentials and forged identity headers: refused, nothing forwarded.
    let raw = format!(
        "GET /invoices/INV-1 HTTP/1.1\r\nHost: {host}\r\n{forged}Connection: close\r\n\r\n"
    );
    let answer = exchange(&host, raw.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(answer.status, 401, "{}", answer.text);
    assert_eq!(world.upstream.journal().await.unwrap().len(), journal.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;

    // Slowloris: a request head that never ends is closed after header_timeout_ms.
    let started = Instant::now();
    let answer = exchange(
        &host,
        format!("GET /invoices HTTP/1.1\r\nHost: {host}\r\nX-Slow: 1\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the connection stayed open {took:?}"
    );
    assert!(
        answer.status == 408 || answer.status == 0,
        "{}",
        answer.text
    );

    // A body that stops halfway: 408 after body_timeout_ms of silence, nothing complete
    // reaches the upstream, and the event says why.
    let before = world.upstream.journal().await.unwrap().len();
    let started = Instant::now();
    let head = format!(
        "POST /invoices HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"partner_id\":"
    );
    let answer = exchange(&host, head.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(answer.status, 408, "{}", answer.text);
    assert!(started.elapsed() < Duration::from_secs(3));
    let problem: Value = serde_json::from_str(answer.body()).unwrap();
    assert_eq!(problem["type"], "urn:invoiceguard:problem:request-timeout");
    let event = world
        .gateway
        .audit_event(answer.header("x-request-id").unwrap());
    assert_eq!(event["outcome"]["status"], 408);
    assert_eq!(event["outcome"]["error_side"], "client");
    assert!(
        event["decision"]["detail"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{event}"
    );
    assert_eq!(event["actor"]["id"], "alice");
    assert_eq!(world.upstream.journal().await.unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_concurrency_limits_hold() {
    let (world, alice, host) = attack_world(
        "max_connections_per_ip = 3\n",
        "\n[limits]\nmax_in_flight = 2\n",
    )
    .await;

    // Two slow requests fill the in-flight limit; the third is refused with 503 and Retry-After.
    let slow = fill(
        &get_as_alice("/invoices/INV-1?delay_ms=1500", ""),
        &host,
        &alice,
    );
    let first = tokio::spawn({
        let (host, slow) = (host.clone(), slow.clone());
        async move { exchange(&host, slow.as_bytes(), Duration::from_secs(5)).await }
    });
    let second = tokio::spawn({
        let (host, slow) = (host.clone(), slow.clone());
        async move { exchange(&host, slow.as_bytes(), Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let raw = fill(&get_as_alice("/invoices/INV-1", ""), &host, &alice);
    let third = exchange(&host, raw.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(third.status, 503, "{}", third.text);
    assert_eq!(third.header("retry-after"), Some("1"));
    let event = world
        .gateway
        .audit_event(third.header("x-request-id").unwrap());
    assert_eq!(event["decision"]["reason"], "overloaded");
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);

    // Three idle connections from one address fill its share (each is kept open: the earlier
    // connections have left the count), and a fourth is closed at once.
    let mut idle = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while idle.len() < 3 {
        let mut stream = TcpStream::connect(&host).await.unwrap();
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
            Err(_) => idle.push(stream),
            Ok(_) => assert!(Instant::now() < deadline, "idle connections are not kept"),
        }
    }
    let answer = exchange(&host, raw.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(answer.status, 0, "{}", answer.text);
    drop(idle);
    // Once they are closed, the address is served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let answer = loop {
        let answer = exchange(&host, raw.as_bytes(), Duration::from_secs(3)).await;
        if answer.status != 0 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer.status, 200, "{}", answer.text);
    let metrics = get(&format!("{}/metrics", world.gateway.admin_url), None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("connections_refused_total{reason=\"max_connections_per_ip\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_does_not_lose_the_event() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let raw = fill(
        &get_as_alice("/invoices/INV-1?delay_ms=800&hangup=1", ""),
        &host,
        &alice,
    );
    // The client leaves while the upstream is still working on its request.
    let answer = exchange(&host, raw.as_bytes(), Duration::from_millis(200)).await;
    assert_eq!(answer.status, 0);
    // The request finishes without its client: the upstream answers after 800 ms, then the
    // event is written (waited for up to 5 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !world
            .gateway
            .audit_events()
            .iter()
            .any(|event| event["outcome"]["upstream_status"] == 200 && event["stage"] == "complete")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let journal = world.upstream.journal().await.unwrap();
    let entry = journal.last().unwrap_or_else(|| {
        panic!(
            "nothing forwarded; events: {:?}\n{}",
            world.gateway.audit_events(),
            world.gateway.stderr_text()
        )
    });
    assert_eq!(entry["target"], "/invoices/INV-1?delay_ms=800&hangup=1");
    let request_id = journaled(entry, "x-request-id");
    let event = world.gateway.audit_event(request_id);
    assert_eq!(event["outcome"]["upstream_status"], 200);
    assert_eq!(event["actor"]["id"], "alice");
}

/// HTTP/2 frames written by hand: the connection preface, an empty SETTINGS, and one HEADERS
/// frame (stream 1, END_STREAM | END_HEADERS) whose header block is `fields` as HPACK literals
/// without indexing (names and values as given: upper case, pseudo-headers in any order).
fn h2_request(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&h2_frame(0x4, 0, 0, &[]));
    bytes.extend_from_slice(&h2_frame(0x1, 0x5, 1, &hpack_block(fields)));
    bytes
}

/// One frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap();
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A header block of literals without indexing.
fn hpack_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        hpack_string(&mut block, name.as_bytes());
        hpack_string(&mut block, value.as_bytes());
    }
    block
}

/// The frames in what the gateway sent: (type, stream id, payload).
fn h2_frames(bytes: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let length = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        let stream =
            u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]]);
        let Some(payload) = bytes.get(at + 9..at + 9 + length) else {
            break;
        };
        frames.push((bytes[at + 3], stream & 0x7fff_ffff, payload.to_vec()));
        at += 9 + length;
    }
    frames
}

/// An HPACK string literal, not Huffman-coded, with its 7-bit prefixed length.
fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut length = bytes.len();
    if length < 127 {
        out.push(u8::try_from(length).unwrap());
    } else {
        out.push(127);
        length -= 127;
        while length >= 128 {
            out.push(u8::try_from(length % 128).unwrap() | 0x80);
            length /= 128;
        }
        out.push(u8::try_from(length).unwrap());
    }
    out.extend_from_slice(bytes);
}

/// The frames the gateway sent back on stream 1 or the connection: `RST_STREAM` or `GOAWAY`
/// with their error code, or `HEADERS` (a response).
#[derive(Debug, PartialEq)]
enum H2Answer {
    Reset(u32),
    GoAway(u32),
    Response,
    Nothing,
}

async fn h2_exchange(address: &str, fields: &[(&str, &str)]) -> H2Answer {
    let answer = exchange(address, &h2_request(fields), Duration::from_millis(1500)).await;
    for (kind, _, payload) in h2_frames(&answer.bytes) {
        let code = |offset: usize| {
            payload
                .get(offset..offset + 4)
                .map_or(u32::MAX, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match kind {
            0x1 => return H2Answer::Response,
            0x3 => return H2Answer::Reset(code(0)),
            0x7 => return H2Answer::GoAway(code(4)),
            _ => {}
        }
    }
    H2Answer::Nothing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_pseudo_header_misuse_is_refused() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let bearer = format!("Bearer {alice}");
    let before = world.upstream.journal().await.unwrap().len();
    let request = |extra: &[(&'static str, &'static str)]| {
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "gw.example"),
            (":path", "/invoices/INV-1"),
        ];
        fields.extend_from_slice(extra);
        fields
    };
    let with_token = |mut fields: Vec<(&'static str, &'static str)>| {
        let mut owned: Vec<(String, String)> = fields
            .drain(..)
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        owned.push(("authorization".to_owned(), bearer.clone()));
        owned
    };
    // A well-formed request first: the frames are right.
    let fields = with_token(request(&[]));
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(h2_exchange(&host, &borrowed).await, H2Answer::Response);
    let after_good = world.upstream.journal().await.unwrap().len();
    assert_eq!(after_good, before + 1);

    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("upper-case header name", request(&[("X-Upper", "1")])),
        (
            "connection-specific header",
            request(&[("connection", "keep-alive")]),
        ),
        (
            "transfer-encoding",
            request(&[("transfer-encoding", "chunked")]),
        ),
        ("te other than trailers", request(&[("te", "gzip")])),
        ("pseudo-header after a regular one", {
            let mut f = request(&[("x-a", "1")]);
            f.push((":status", "200"));
            f
        }),
        (
            "response pseudo-header in a request",
            request(&[(":status", "200")]),
        ),
        ("unknown pseudo-header", request(&[(":evil", "1")])),
        ("duplicate :path", request(&[(":path", "/settings")])),
        (
            "missing :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "gw.example"),
            ],
        ),
        (
            "empty :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "gw.example"),
                (":path", ""),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, fields) in cases {
        let fields = with_token(fields);
        let borrowed: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let answer = h2_exchange(&host, &borrowed).await;
        let refused = matches!(answer, H2Answer::Reset(1) | H2Answer::GoAway(1));
        if !refused {
            failures.push(format!("{name}: {answer:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // `host` and `:authority` naming different hosts: the gateway refuses it with 400.
    let fields = with_token(request(&[("host", "upstream.internal")]));
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(h2_exchange(&host, &borrowed).await, H2Answer::Response);
    let events = world.gateway.audit_events();
    let last = events.last().unwrap();
    assert_eq!(last["decision"]["reason"], "bad_request");
    assert_eq!(last["outcome"]["status"], 400);
    assert_eq!(world.upstream.journal().await.unwrap().len(), after_good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_limits_and_rapid_reset() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let bearer = format!("Bearer {alice}");
    let before = world.upstream.journal().await.unwrap().len();
    // 1,000 streams, each opened and cancelled at once (HEADERS then RST_STREAM CANCEL), in
    // one write: the rapid-reset attack.
    let fields = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", host.as_str()),
        (":path", "/invoices/INV-1?delay_ms=100"),
        ("authorization", bearer.as_str()),
    ];
    let mut bytes = h2_request(&fields);
    bytes.extend_from_slice(&[0, 0, 4, 0x3, 0, 0, 0, 0, 1, 0, 0, 0, 0x8]);
    for stream in (3u32..2001).step_by(2) {
        bytes.extend_from_slice(&h2_frame(0x1, 0x5, stream, &hpack_block(&fields)));
        bytes.extend_from_slice(&h2_frame(0x3, 0, stream, &0x8u32.to_be_bytes()));
    }
    let answer = exchange(&host, &bytes, Duration::from_secs(3)).await;
    let frames = h2_frames(&answer.bytes);
    // The gateway's SETTINGS: at most 128 streams at once, 64 KiB of headers.
    let settings = frames
        .iter()
        .find(|(kind, _, _)| *kind == 0x4)
        .map(|(_, _, payload)| payload.clone())
        .unwrap();
    let setting = |id: u16| {
        settings.chunks(6).find_map(|pair| {
            (u16::from_be_bytes([pair[0], pair[1]]) == id)
                .then(|| u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]))
        })
    };
    assert_eq!(setting(0x3), Some(128), "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert_eq!(
        setting(0x6),
        Some(64 * 1024),
        "SETTINGS_MAX_HEADER_LIST_SIZE"
    );
    let goaway = frames
        .iter()
        .find(|(kind, _, _)| *kind == 0x7)
        .map(|(_, _, payload)| {
            u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]])
        });
    assert_eq!(goaway, Some(0xb), "GOAWAY with ENHANCE_YOUR_CALM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let forwarded = world.upstream.journal().await.unwrap().len() - before;
    assert!(
        forwarded < 100,
        "{forwarded} of 1,000 cancelled streams were forwarded"
    );
    // The gateway still serves everyone else.
    let reply = get(&world.url("/invoices/INV-1"), Some(&alice))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}

/// A property over the real parts: for 300 request paths built at random (seeded, so a failure
/// can be replayed) from hostile pieces, whatever the gateway forwards reaches the upstream with
/// exactly the path the policy decided on (the audit event's path and route), and whatever it
/// refuses reaches the upstream not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_the_policy_saw_is_the_path_the_upstream_received() {
    const PIECES: [&str; 22] = [
        "",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        "%2f",
        "%5c",
        ";x",
        "%3b",
        "%25",
        "%c0%ae",
        "%ff",
        "%00",
        "%zz",
        "%69nvoices",
        "invoices",
        "INV-1",
        "INV%2d1",
        "approve",
        "settings",
        "partners",
        "P-1",
    ];
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % u64::try_from(bound).unwrap()).unwrap()
    };
    let mut forwarded_count = 0;
    for case in 0..300 {
        let segments: Vec<&str> = (0..1 + next(4))
            .map(|_| PIECES[next(PIECES.len())])
            .collect();
        let target = format!("/{}", segments.join("/"));
        let before = world.upstream.journal().await.unwrap().len();
        let raw = fill(&get_as_alice(&target, ""), &host, &alice);
        let answer = exchange(&host, raw.as_bytes(), Duration::from_secs(3)).await;
        assert_ne!(answer.status, 0, "case {case}: {target} got no answer");
        let journal = world.upstream.journal().await.unwrap();
        let Some(id) = answer.header("x-request-id") else {
            // Refused by the HTTP layer: nothing forwarded.
            assert_eq!(journal.len(), before, "case {case}: {target}");
            continue;
        };
        let event = world.gateway.audit_event(id);
        let received: Vec<&Value> = journal[before..]
            .iter()
            .filter(|entry| journaled(entry, "x-request-id") == id)
            .collect();
        if event["outcome"]["upstream_status"].is_null() {
            assert!(received.is_empty(), "case {case}: {target} was forwarded");
        } else {
            forwarded_count += 1;
            assert_eq!(received.len(), 1, "case {case}: {target}");
            assert_eq!(
                received[0]["target"], event["request"]["path"],
                "case {case}: {target}: the upstream received another path than was decided"
            );
            assert!(
                !event["request"]["route"].is_null(),
                "case {case}: {target}"
            );
        }
    }
    assert!(
        forwarded_count > 10,
        "only {forwarded_count} paths were forwarded"
    );
}

/// The `Host` (HTTP/1.1) or `:authority` (HTTP/2) must be one of `listen.hosts`: 421 otherwise,
/// audited, nothing forwarded; the port and the case of a listed name do not matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_gateways_own_host_names_are_served() {
    let (world, alice, host) = attack_world(
        &format!("{LISTEN}hosts = [\"127.0.0.1\", \"Invoices.Example\"]\n"),
        LIMITS,
    )
    .await;
    let port = host.rsplit(':').next().unwrap().to_owned();
    for (target, host_header, status) in [
        ("/invoices/INV-1", host.clone(), 200),
        ("/invoices/INV-1", format!("invoices.example:{port}"), 200),
        ("/invoices/INV-1", "INVOICES.EXAMPLE".to_owned(), 200),
        ("/invoices/INV-1", "evil.example".to_owned(), 421),
        ("/invoices/INV-1", format!("evil.example:{port}"), 421),
        ("/invoices/INV-1", "127.0.0.2".to_owned(), 421),
        (
            "http://evil.example/invoices/INV-1",
            "evil.example".to_owned(),
            421,
        ),
    ] {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: Bearer {alice}\r\nConnection: close\r\n\r\n"
        );
        let before = world.upstream.journal().await.unwrap().len();
        let answer = exchange(&host, raw.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(answer.status, status, "{host_header}: {}", answer.text);
        let forwarded = world.upstream.journal().await.unwrap().len() - before;
        assert_eq!(forwarded, usize::from(status == 200), "{host_header}");
        if status == 421 {
            let problem: Value = serde_json::from_str(answer.body()).unwrap();
            assert_eq!(
                problem["type"],
                "urn:invoiceguard:problem:misdirected-request"
            );
            let event = world
                .gateway
                .audit_event(answer.header("x-request-id").unwrap());
            assert_eq!(event["outcome"]["status"], 421);
            assert_eq!(event["decision"]["reason"], "misdirected");
            assert_eq!(event["outcome"]["error_side"], "client");
        }
    }
    // HTTP/2: the `:authority` is the host; a foreign one is answered, never forwarded.
    let bearer = format!("Bearer {alice}");
    for (authority, forwarded) in [("127.0.0.1", 1), ("evil.example", 0)] {
        let before = world.upstream.journal().await.unwrap().len();
        let fields = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", authority),
            (":path", "/invoices/INV-1"),
            ("authorization", bearer.as_str()),
        ];
        assert_eq!(h2_exchange(&host, &fields).await, H2Answer::Response);
        let after = world.upstream.journal().await.unwrap().len();
        assert_eq!(after - before, forwarded, "{authority}");
    }
    let refused = world
        .gateway
        .audit_events()
        .iter()
        .filter(|event| event["outcome"]["status"] == 421)
        .count();
    assert_eq!(refused, 5, "four HTTP/1.1 refusals and one HTTP/2");
}

/// Other proxies' identity and forwarding headers, in every family, and names spelled with an
/// underscore, never reach the upstream; the gateway's own headers do, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_other_proxys_identity_header_reaches_the_upstream() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let foreign = [
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Access-Token",
        "X-Forwarded-Uri",
        "X-Auth-Request-User",
        "X-Auth-Request-Groups",
        "Remote-User",
        "X-Remote-User",
        "X-Amzn-Oidc-Identity",
        "X-Amzn-Oidc-Data",
        "X-Ms-Client-Principal",
        "X-Ms-Client-Principal-Name",
        "X-Goog-Authenticated-User-Email",
        "X-Client-IP",
        "True-Client-IP",
        "CF-Connecting-IP",
        "X-Cluster-Client-IP",
        "Cf-Access-Authenticated-User-Email",
        "X-Ssl-Client-S-Dn",
        "Client-Cert",
        "X_Invoiceguard_Roles",
        "X_Forwarded_User",
    ];
    let extra: String = foreign
        .iter()
        .map(|name| format!("{name}: admin\r\n"))
        .collect();
    let raw = fill(&get_as_alice("/invoices/INV-1", &extra), &host, &alice);
    let answer = exchange(&host, raw.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let journal = world.upstream.journal().await.unwrap();
    let entry = journal.last().unwrap();
    let names: Vec<String> = entry["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    for name in foreign {
        assert!(
            !names.contains(&name.to_ascii_lowercase()),
            "{name} reached the upstream: {names:?}"
        );
    }
    assert!(names.iter().all(|name| !name.contains('_')), "{names:?}");
    assert_eq!(journaled(entry, "x-invoiceguard-roles"), "invoicing");
    assert_eq!(journaled(entry, "x-forwarded-for"), "127.0.0.1");
}

/// A body trickled just faster than the pause limit is cut off at the whole-body deadline: 408,
/// the client's doing in the audit event, not the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_meets_its_deadline() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let mut stream = TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST /invoices HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    // One byte every 400 ms (the pause limit is 700 ms), until the gateway answers.
    while started.elapsed() < Duration::from_secs(6) {
        let _ = stream.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(400), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                read.extend_from_slice(&buffer[..n]);
                if read.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&read).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let id = text
        .lines()
        .find_map(|line| line.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_owned();
    let event = world.gateway.audit_event(&id);
    assert_eq!(event["outcome"]["status"], 408);
    assert_eq!(event["outcome"]["error_side"], "client");
    assert!(
        event["decision"]["detail"]
            .as_str()
            .unwrap()
            .contains("not received whole within 1500 ms"),
        "{event}"
    );
}

/// Naming someone in a token that does not verify locks out nobody but its sender's address;
/// failures of tokens that do verify (signed by the IdP, for another audience) count against
/// their subject as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_locks_out_another_person_by_naming_them() {
    let (world, _alice, _host) = attack_world(LISTEN, LIMITS).await;
    let carol = world.token("carol").await;
    let parts: Vec<&str> = carol.split('.').collect();
    // Carol's token with a changed signature, twelve times (the per-subject limit is 10).
    for attempt in 0..12 {
        let mut signature = parts[2].to_owned();
        let middle = signature.len() / 2;
        let flipped = if signature.as_bytes()[middle] == b'A' {
            "B"
        } else {
            "A"
        };
        signature.replace_range(middle..=middle, flipped);
        let forged = format!("{}.{}.{signature}", parts[0], parts[1]);
        let reply = get(&world.url("/invoices"), Some(&forged)).await.unwrap();
        assert_eq!(reply.status, 401, "attempt {attempt}");
        let event = world.gateway.audit_event(reply.header("x-request-id"));
        assert_eq!(event["severity"], "high");
    }
    let reply = get(&world.url("/invoices"), Some(&carol)).await.unwrap();
    assert_eq!(
        reply.status, 200,
        "carol was locked out by a stranger: {:?}",
        reply.body
    );

    // Tokens the IdP signed for carol, for another audience: proven failures, counted.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": world.idp.issuer, "sub": "carol", "aud": "urn:other:api", "iat": now,
        "exp": now + 300, "roles": ["accountant"], "amr": ["pwd", "otp"],
        "client_id": "invoiceguard-demo",
    });
    let wrong_audience = world
        .idp
        .sign(json!({"typ": "at+jwt"}), claims, None)
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            get(&world.url("/invoices"), Some(&wrong_audience))
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(statuses[..10], [401; 10]);
    assert_eq!(statuses[10], 429, "{statuses:?}");
    let reply = get(&world.url("/invoices"), Some(&carol)).await.unwrap();
    assert_eq!(reply.status, 429, "proven failures count against carol");
}

/// HTTP/2 requests meet the same rules: one credential, one decode, NFKC paths, no override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_meet_the_same_rules() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let before = world.upstream.journal().await.unwrap().len();
    let send = |path: &str, extra: &[(&str, &str)]| {
        let mut request = http::Request::get(format!("http://{host}{path}"))
            .header("authorization", format!("Bearer {alice}"));
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        send_h2(request.body(Full::default()).unwrap())
    };
    assert_eq!(send("/invoices/INV-1", &[]).await.unwrap().status, 200);
    for (path, extra) in [
        (
            "/invoices/INV-1",
            vec![("authorization", "Bearer forged.token.here")],
        ),
        ("/invoices/INV-1", vec![("x-api-key", "some-key")]),
        ("/invoices/%252e%252e%252fsettings", vec![]),
        ("/invoices/%EF%BC%8Fsettings", vec![]),
        ("/invoices/%E2%80%A5/settings", vec![]),
        ("/invoices/INV-1", vec![("x-override-url", "/settings")]),
    ] {
        let reply = send(path, &extra).await.unwrap();
        assert_eq!(reply.status, 400, "{path} {extra:?}: {:?}", reply.body);
        assert_problem(&reply, 400);
    }
    // A method override in a form body, over HTTP/2.
    let form = http::Request::post(format!("http://{host}/invoices"))
        .header("authorization", format!("Bearer {alice}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(
            b"partner_id=P-1&_method=DELETE",
        )))
        .unwrap();
    let reply = send_h2(form).await.unwrap();
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert_problem(&reply, 400);
    assert_eq!(world.upstream.journal().await.unwrap().len(), before + 1);
}

/// The head guard reads only heads: bodies full of bare LFs and CRs (a JSON body with newlines,
/// a chunked body) on one keep-alive connection pass, and so does every request after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_with_bare_line_ends_pass_on_a_kept_alive_connection() {
    let (world, alice, host) = attack_world(LISTEN, LIMITS).await;
    let before = world.upstream.journal().await.unwrap().len();
    let json = "{\n\"partner_id\": \"P-1\",\r\"amount\": 100,\n\"lines\": [\n]\n}";
    let chunk = "{\"partner_id\":\n\"P-2\",\"amount\":\r7,\"lines\":[]}";
    let requests = format!(
        "POST /invoices HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}\
         POST /invoices HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n\
         GET /invoices/INV-1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {alice}\r\nConnection: close\r\n\r\n",
        json.len(),
        chunk.len(),
    );
    let answer = exchange(&host, requests.as_bytes(), Duration::from_secs(5)).await;
    let statuses: Vec<&str> = answer
        .text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answer.text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["201", "201", "200"], "{}", answer.text);
    let journal = world.upstream.journal().await.unwrap();
    let targets: Vec<&str> = journal[before..]
        .iter()
        .map(|entry| entry["target"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(targets, ["/invoices", "/invoices", "/invoices/INV-1"]);
    assert!(
        !world
            .gateway
            .audit_events()
            .iter()
            .any(|event| event["decision"]["reason"] == "malformed"),
        "a body was taken for a head"
    );
}
