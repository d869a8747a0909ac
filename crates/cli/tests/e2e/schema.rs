//! The documented schemas against what the gateway really writes: `docs/audit-event.schema.json`
//! checked with the `jsonschema` crate (every keyword, formats included), and the same events
//! with python-jsonschema and the OCSF schemas.

use serde_json::Value;

/// The audit event schema from `docs/`.
pub(crate) fn audit_event_schema() -> Value {
    let path = invoiceguard_testkit::repo_root().join("docs/audit-event.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every way `value` breaks `schema`, each as `instance path: message`.
pub(crate) fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap();
    validator
        .iter_errors(value)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

#[test]
fn the_schema_finds_what_breaks_it() {
    let schema = audit_event_schema();
    let bad = serde_json::json!({
        "event_id": "e", "seq": 0, "stage": "later", "time": "yesterday", "request_id": "r",
        "actor": {"type": "robot"}, "source": {"ip": "1", "user_agent": null},
        "request": {"method": "GET", "path": "/", "route": null, "protocol": "HTTP/1.1"},
        "action": null, "resource": null, "break_glass_reason": null,
        "decision": {"effect": "allow", "reason": "policy", "policies": [1], "policy_version": "v",
                     "detail": null, "shadow": null},
        "outcome": {"status": 200, "upstream_status": null, "duration_ms": 1.5, "error_side": null,
                    "export_rows": null},
        "prev_hash": "xyz", "token": "secret"
    });
    let found = violations(&schema, &bad).join("\n");
    for expected in [
        "/seq: ",
        "/stage: ",
        "/time: ",
        "/actor: ",
        "/decision/policies/0: ",
        "\"severity\" is a required property",
        "/prev_hash: ",
        "'token' was unexpected",
    ] {
        assert!(
            found.contains(expected),
            "`{expected}` not found in:\n{found}"
        );
    }
}

/// Runs `tests/schema/validate.py` (python-jsonschema, and the OCSF schemas packaged by
/// `ocsf-json-schema`, both installed by `tests/deps.sh` into `target/tools`) on `args`.
fn validate(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let root = invoiceguard_testkit::repo_root();
    // target/tools/bin/python: tests/deps.sh installs it.
    super::run(
        std::process::Command::new(root.join("target/tools/bin/python"))
            .arg(root.join("tests/schema/validate.py"))
            .args(args),
    )
}

/// One raw HTTP/1.1 exchange (for heads the HTTP client would not send).
async fn raw(address: &str, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        stream.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_is_valid_json_schema_and_ocsf() {
    use super::*;
    let dir = TempDir::new("conformance").unwrap();
    let (native, ocsf) = (dir.path().join("native.log"), dir.path().join("ocsf.log"));
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "conformance-admin-token\n").unwrap();
    let extra = format!(
        "\n[[audit.sinks]]\nname = \"native\"\nfile = {native:?}\n\n[[audit.sinks]]\nname = \"ocsf\"\nformat = \"ocsf\"\nfile = {ocsf:?}\n\n\
         [admin]\naddress = \"127.0.0.1:{{admin_port}}\"\ntoken_file = {token_file:?}\n\n\
         [limits]\nfailed_auth_per_ip = 3\nmax_body_bytes = 4096\n"
    );
    let world = World::start_audit(&extra, "").await;
    let (alice, dave, zed) = (
        world.token("alice").await,
        world.token("dave").await,
        world.token("zed").await,
    );
    let address = world.gateway.url.trim_start_matches("http://").to_owned();
    let mut statuses = std::collections::BTreeSet::new();
    let mut note = |reply: &invoiceguard_testkit::Reply| {
        statuses.insert(reply.status);
    };
    // Allowed: a read (info), a creation (authorized + complete), a sensitive change (synced
    // authorized + complete, high), a break-glass read (critical).
    note(
        &get(&world.url("/invoices/INV-1"), Some(&alice))
            .await
            .unwrap(),
    );
    note(
        &send(request(
            "POST",
            &world.url("/invoices"),
            Some(&alice),
            Some(json!({"partner_id": "P-1", "amount": 5.0})),
        ))
        .await
        .unwrap(),
    );
    note(
        &send(request(
            "PUT",
            &world.url("/settings"),
            Some(&dave),
            Some(json!({"company": "Example Kft.", "default_currency": "EUR"})),
        ))
        .await
        .unwrap(),
    );
    let break_glass = Request::get(world.url("/invoices/INV-1"))
        .header("authorization", format!("Bearer {zed}"))
        .header("x-break-glass-reason", "INC-7")
        .body(Full::default())
        .unwrap();
    note(&send(break_glass).await.unwrap());
    // Refused: by policy, no route, no token, a bad token, a stale login (step-up), a bad path,
    // a body too large, a head the HTTP layer refuses, an unknown resource.
    note(&get(&world.url("/settings"), Some(&alice)).await.unwrap());
    note(&get(&world.url("/admin/debug"), Some(&alice)).await.unwrap());
    note(&get(&world.url("/invoices"), None).await.unwrap());
    let stale = world
        .idp
        .user_token(
            "bob",
            TokenRequest {
                auth_age: Some(3600),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    note(
        &send(request(
            "POST",
            &world.url("/invoices/INV-1/approve"),
            Some(&stale),
            None,
        ))
        .await
        .unwrap(),
    );
    note(
        &get(&world.url("/invoices/%252e%252e"), Some(&alice))
            .await
            .unwrap(),
    );
    note(
        &send(request(
            "POST",
            &world.url("/invoices"),
            Some(&alice),
            Some(json!({"pad": "x".repeat(8192)})),
        ))
        .await
        .unwrap(),
    );
    let bob = world.token("bob").await;
    note(
        &send(request(
            "POST",
            &world.url("/invoices/INV-404/approve"),
            Some(&bob),
            None,
        ))
        .await
        .unwrap(),
    );
    let malformed = raw(&address, b"GET /invoices HTTP/1.1\nHost: x\n\n").await;
    assert!(malformed.starts_with("HTTP/1.1 400"), "{malformed}");
    // Admin: a revocation, the list, a wrong token; then the revoked subject's refusal.
    let admin = |method: &str, path: &str, token: Option<&str>, body: Option<Value>| {
        request(
            method,
            &format!("{}{path}", world.gateway.admin_url),
            token,
            body,
        )
    };
    let token = Some("conformance-admin-token");
    note(
        &send(admin(
            "POST",
            "/revocations",
            token,
            Some(json!({"subject": "frank", "reason": "leaver"})),
        ))
        .await
        .unwrap(),
    );
    note(
        &send(admin("GET", "/revocations", token, None))
            .await
            .unwrap(),
    );
    note(
        &send(admin("GET", "/revocations", Some("wrong"), None))
            .await
            .unwrap(),
    );
    let frank = world.token("frank").await;
    note(
        &get(&world.url("/invoices/INV-1"), Some(&frank))
            .await
            .unwrap(),
    );
    // Brute force: bad tokens past the address's limit (3), then 429 for everyone from here.
    for _ in 0..4 {
        note(
            &get(&world.url("/invoices/INV-1"), Some("not.a.jwt"))
                .await
                .unwrap(),
        );
    }
    note(
        &get(&world.url("/invoices/INV-1"), Some(&alice))
            .await
            .unwrap(),
    );
    for status in [200, 201, 401, 403, 400, 413, 429] {
        assert!(
            statuses.contains(&status),
            "{status} was produced: {statuses:?}"
        );
    }
    // The gateway stops; a torn line is planted; it starts again and reports the repair.
    let mut gateway = world.gateway;
    gateway.terminate().unwrap();
    let segment = gateway.segments().pop().unwrap();
    std::io::Write::write_all(
        &mut std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap(),
        b"{\"seq\":",
    )
    .unwrap();
    gateway.kill_and_restart(Path::new(BINARY)).await.unwrap();
    // Everything delivered to both file sinks, then stopped.
    let written = gateway.audit_events().len();
    for _ in 0..100 {
        let lines = |path: &Path| {
            std::fs::read_to_string(path)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        if lines(&native) == written && lines(&ocsf) == written {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    gateway.terminate().unwrap();
    let events = gateway.audit_events();
    let reasons: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["decision"]["reason"].as_str())
        .collect();
    for reason in [
        "policy",
        "step_up",
        "no_route",
        "unauthenticated",
        "bad_request",
        "too_large",
        "malformed",
        "rate_limited",
        "admin",
        "system",
    ] {
        assert!(reasons.contains(reason), "no `{reason}` event: {reasons:?}");
    }
    let schema = invoiceguard_testkit::repo_root().join("docs/audit-event.schema.json");
    let (ok, report) = validate(&["native".as_ref(), schema.as_os_str(), native.as_os_str()]);
    assert!(ok, "native events against the JSON Schema:\n{report}");
    assert!(
        report.contains(&format!("ok: {} events", events.len())),
        "{report}"
    );
    let (ok, report) = validate(&["ocsf".as_ref(), ocsf.as_os_str()]);
    assert!(ok, "OCSF events against the OCSF schema:\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_gateway_without_policies_or_keys_are_valid_too() {
    use super::*;
    // No policy set (a broken folder) and an IdP that never answers: `policy_unavailable`,
    // then `unavailable` (keys) events.
    let dir = TempDir::new("broken-start").unwrap();
    let policies = super::policy::policy_copy(dir.path());
    std::fs::write(
        policies.join("roles.cedar"),
        "permit (principal, action, resource) when {",
    )
    .unwrap();
    let native = dir.path().join("native.log");
    let ocsf = dir.path().join("ocsf.log");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let upstream = Upstream::start().unwrap();
    let config = |native: &Path, ocsf: &Path| {
        format!(
            "{}\n[[audit.sinks]]\nname = \"native\"\nfile = {native:?}\n\n[[audit.sinks]]\nname = \"ocsf\"\nformat = \"ocsf\"\nfile = {ocsf:?}\n",
            sections(&issuer, &upstream.url(), "")
        )
    };
    let (native2, ocsf2) = (dir.path().join("native2.log"), dir.path().join("ocsf2.log"));
    let mut broken = GatewayProcess::start_with_policies(
        Path::new(BINARY),
        &config(&native, &ocsf),
        false,
        &policies,
        "",
    )
    .await
    .unwrap();
    let reply = get(&format!("{}/invoices/INV-1", broken.url), Some("a.b.c"))
        .await
        .unwrap();
    assert_problem(&reply, 503);
    let working = super::policy::policy_copy(&dir.path().join("good"));
    let mut keyless = GatewayProcess::start_with_policies(
        Path::new(BINARY),
        &config(&native2, &ocsf2),
        false,
        &working,
        "",
    )
    .await
    .unwrap();
    // A token from the configured issuer, whose keys were never fetched.
    let token = format!(
        "{}.{}.c2ln",
        invoiceguard_testkit::b64url_encode(br#"{"alg":"ES256","kid":"k","typ":"at+jwt"}"#),
        invoiceguard_testkit::b64url_encode(
            json!({"iss": issuer, "sub": "alice"})
                .to_string()
                .as_bytes()
        )
    );
    let reply = get(&format!("{}/invoices/INV-1", keyless.url), Some(&token))
        .await
        .unwrap();
    assert_problem(&reply, 503);
    for gateway in [&mut broken, &mut keyless] {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        gateway.terminate().unwrap();
    }
    let reasons: Vec<String> = broken
        .audit_events()
        .iter()
        .chain(keyless.audit_events().iter())
        .filter_map(|e| e["decision"]["reason"].as_str().map(str::to_owned))
        .collect();
    assert!(
        reasons.iter().any(|r| r == "policy_unavailable"),
        "{reasons:?}"
    );
    let schema = invoiceguard_testkit::repo_root().join("docs/audit-event.schema.json");
    let native2 = dir.path().join("native2.log");
    let ocsf2 = dir.path().join("ocsf2.log");
    let (ok, report) = validate(&[
        "native".as_ref(),
        schema.as_os_str(),
        native.as_os_str(),
        native2.as_os_str(),
    ]);
    assert!(ok, "{report}");
    let (ok, report) = validate(&["ocsf".as_ref(), ocsf.as_os_str(), ocsf2.as_os_str()]);
    assert!(ok, "{report}");
}
