//! The first slice end to end: the demo's walk, identity headers, normalization, HTTP/2 and TLS,
//! outages, shutdown and `check`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_walk_allowed_and_denied_calls_and_their_audit_events() {
    let world = World::start().await;
    let alice = world.token("alice").await;

    // An invoicing user creates an invoice: allowed, forwarded, answered by the upstream.
    let created = send(request(
        "POST",
        &world.url("/invoices"),
        Some(&alice),
        Some(json!({"partner_id": "P-1", "amount": 250.0})),
    ))
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(
        created.json()["created_by"],
        "alice",
        "the upstream learned the verified caller"
    );
    let event = world.gateway.audit_event(created.header("x-request-id"));
    assert_eq!(event["decision"]["effect"], "allow");
    assert_eq!(event["decision"]["policies"], json!(["role.invoicing"]));
    assert_eq!(event["actor"]["id"], "alice");
    assert_eq!(event["actor"]["type"], "user");
    assert_eq!(event["actor"]["roles"], json!(["invoicing"]));
    assert_eq!(event["actor"]["mfa"], true);
    assert_eq!(event["action"], "invoice:create");
    assert_eq!(event["request"]["route"], "/invoices");
    assert_eq!(event["outcome"]["status"], 201);
    assert_eq!(event["outcome"]["upstream_status"], 201);
    assert_eq!(event["source"]["ip"], "127.0.0.1");
    assert_eq!(event["severity"], "info");

    // The same user changes settings: denied by the prohibition, never forwarded.
    let settings = send(request(
        "PUT",
        &world.url("/settings"),
        Some(&alice),
        Some(json!({"company": "Evil"})),
    ))
    .await
    .unwrap();
    let problem = assert_problem(&settings, 403);
    assert!(
        !settings.body.windows(4).any(|w| w == b"rbac"),
        "no policy internals in the answer: {problem}"
    );
    let event = world.gateway.audit_event(settings.header("x-request-id"));
    assert_eq!(event["decision"]["effect"], "deny");
    assert_eq!(event["decision"]["reason"], "policy");
    assert_eq!(
        event["decision"]["policies"],
        json!(["rbac.invoicing-no-administration"])
    );
    assert_eq!(
        event["resource"],
        json!({"type": "Settings", "id": "global"})
    );
    assert_eq!(event["outcome"]["upstream_status"], Value::Null);

    // No token: 401 with a bare RFC 6750 challenge.
    let anonymous = get(&world.url("/invoices"), None).await.unwrap();
    assert_problem(&anonymous, 401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        "Bearer realm=\"invoiceguard\""
    );
    let event = world.gateway.audit_event(anonymous.header("x-request-id"));
    assert_eq!(event["decision"]["reason"], "unauthenticated");
    assert_eq!(event["decision"]["detail"], "missing_token");
    assert_eq!(event["actor"], Value::Null);

    // A route the table does not know: denied by default, the caller still recorded.
    let unknown = get(&world.url("/admin/debug"), Some(&alice)).await.unwrap();
    assert_problem(&unknown, 403);
    let event = world.gateway.audit_event(unknown.header("x-request-id"));
    assert_eq!(event["decision"]["reason"], "no_route");
    assert_eq!(event["actor"]["id"], "alice");
    assert_eq!(event["request"]["route"], Value::Null);

    // The upstream saw only the allowed request.
    let journal = world.upstream.journal().await.unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");

    // One event per request, numbered without gaps, and never a token; the creation (it may
    // change something) has its `authorized` event written before it was forwarded.
    let all = world.gateway.audit_events();
    assert_eq!(all.len(), 6);
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event["seq"], i as u64 + 1);
    }
    // First the policy set the gateway started with, then the requests'.
    assert_eq!(all[0]["action"], "policy:loaded");
    let events = &all[1..];
    assert_eq!(
        (events[0]["stage"].as_str(), events[0]["action"].as_str()),
        (Some("authorized"), Some("invoice:create"))
    );
    assert_eq!(events[0]["request_id"], events[1]["request_id"]);
    assert_eq!(
        events.iter().filter(|e| e["stage"] == "complete").count(),
        4
    );
    // Each as docs/audit-event.schema.json documents it.
    let schema = super::schema::audit_event_schema();
    for event in &all {
        let problems = super::schema::violations(&schema, event);
        assert!(problems.is_empty(), "{problems:?} in {event}");
    }
    let audit_text = world.gateway.audit_text();
    let stdout_text = std::fs::read_to_string(&world.gateway.stdout_file).unwrap();
    assert_eq!(
        stdout_text, audit_text,
        "[audit] stdout prints every event, and only events"
    );
    let verified = std::process::Command::new(BINARY)
        .args(["audit", "verify"])
        .arg(&world.gateway.spool)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{out}");
    assert!(
        out.starts_with("ok: 6 events, seq 1 to 6, chain intact, end anchored\nhead: "),
        "{out}"
    );
    assert!(
        !audit_text.contains(&alice) && !audit_text.contains("eyJ"),
        "a token reached the audit spool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let world = World::start().await;
    let alice = world.token("alice").await;
    let forged = Request::post(world.url("/invoices"))
        .header("authorization", format!("Bearer {alice}"))
        .header("content-type", "application/json")
        .header("x-invoiceguard-subject", "mallory")
        .header("X-Invoiceguard-Roles", "admin")
        .header("x-invoiceguard-mfa", "true")
        .header("x-forwarded-for", "10.9.9.9")
        .header("forwarded", "for=10.9.9.9")
        .header("x-request-id", "forged-id")
        .header("connection", "keep-alive, te")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(
            json!({"partner_id": "P-2", "amount": 10.0}).to_string(),
        )))
        .unwrap();
    let reply = send(forged).await.unwrap();
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.json()["created_by"], "alice");
    assert_ne!(reply.header("x-request-id"), "forged-id");

    let journal = world.upstream.journal().await.unwrap();
    assert_eq!(journal.len(), 1);
    let headers: Vec<(String, String)> =
        serde_json::from_value(journal[0]["headers"].clone()).unwrap();
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("x-invoiceguard-subject"), ["alice"]);
    assert_eq!(values("x-invoiceguard-roles"), ["invoicing"]);
    assert_eq!(values("x-invoiceguard-principal-type"), ["user"]);
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values("x-forwarded-proto"), ["http"]);
    assert_eq!(values("x-request-id"), [reply.header("x-request-id")]);
    for gone in ["forwarded", "authorization", "te", "connection"] {
        assert!(
            values(gone).is_empty(),
            "`{gone}` reached the upstream: {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_without_mfa_and_integration_accounts_are_held_to_the_baseline() {
    let world = World::start().await;
    let no_mfa = world
        .idp
        .user_token(
            "alice",
            TokenRequest {
                amr: Some("pwd"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Without MFA: asked to log in again with MFA (RFC 9470), not refused outright.
    let reply = get(&world.url("/invoices"), Some(&no_mfa)).await.unwrap();
    assert_problem(&reply, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer realm=\"invoiceguard\", error=\"insufficient_user_authentication\", \
         error_description=\"a stronger or more recent login is required\", \
         acr_values=\"urn:invoiceguard:acr:mfa\""
    );
    let event = world.gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(
        event["decision"]["policies"],
        json!(["mfa.required-for-users"])
    );
    assert_eq!(event["decision"]["reason"], "step_up");
    assert_eq!(event["actor"]["mfa"], false);

    let erp = world
        .idp
        .service_token(
            "erp-sync",
            "erp-sync-secret",
            "invoices:read invoices:write",
        )
        .await
        .unwrap();
    let listed = get(&world.url("/invoices"), Some(&erp)).await.unwrap();
    assert_eq!(listed.status, 200);
    let event = world.gateway.audit_event(listed.header("x-request-id"));
    assert_eq!(event["actor"]["type"], "service_account");
    assert_eq!(event["actor"]["id"], "erp-sync");
    assert_eq!(
        event["decision"]["policies"],
        json!(["integration.invoices-read"])
    );

    let approve = send(request(
        "POST",
        &world.url("/invoices/INV-1/approve"),
        Some(&erp),
        None,
    ))
    .await
    .unwrap();
    assert_problem(&approve, 403);
    let event = world.gateway.audit_event(approve.header("x-request-id"));
    assert_eq!(
        event["decision"]["policies"],
        json!(["integration.no-interactive-actions"])
    );

    // The admin configures but never approves; the approver approves.
    let dave = world.token("dave").await;
    assert_eq!(
        send(request(
            "PUT",
            &world.url("/settings"),
            Some(&dave),
            Some(json!({"company": "Example"}))
        ))
        .await
        .unwrap()
        .status,
        200
    );
    let alice = world.token("alice").await;
    assert_eq!(
        send(request(
            "POST",
            &world.url("/invoices/INV-1/submit"),
            Some(&alice),
            None
        ))
        .await
        .unwrap()
        .status,
        200
    );
    let bob = world.token("bob").await;
    let approved = send(request(
        "POST",
        &world.url("/invoices/INV-1/approve"),
        Some(&bob),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    assert_eq!(approved.json()["approved_by"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_receives_exactly_the_path_that_was_authorized() {
    let world = World::start().await;
    let alice = world.token("alice").await;
    let reply = get(&world.url("//invoices/./INV-1/"), Some(&alice))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let reply = get(&world.url("/%69nvoices/INV-1?fields=id"), Some(&alice))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let journal = world.upstream.journal().await.unwrap();
    let targets: Vec<&str> = journal
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["/invoices/INV-1", "/invoices/INV-1?fields=id"]);

    // Dot segments are resolved before routing: this is `PUT /settings`, and it is denied.
    let sneaky = send(request(
        "PUT",
        &world.url("/invoices/../settings"),
        Some(&alice),
        Some(json!({})),
    ))
    .await
    .unwrap();
    assert_problem(&sneaky, 403);
    let event = world.gateway.audit_event(sneaky.header("x-request-id"));
    assert_eq!(event["request"]["path"], "/settings");
    assert_eq!(
        event["decision"]["policies"],
        json!(["rbac.invoicing-no-administration"])
    );

    for path in [
        "/invoices%2fINV-1",
        "/invoices/INV-1%5c..",
        "/invoices/INV-1;jsessionid=x",
        "/../invoices",
    ] {
        let reply = get(&world.url(path), Some(&alice)).await.unwrap();
        assert_problem(&reply, 400);
        let event = world.gateway.audit_event(reply.header("x-request-id"));
        assert_eq!(event["decision"]["reason"], "bad_request", "{path}");
    }
    let override_header = Request::post(world.url("/invoices"))
        .header("authorization", format!("Bearer {alice}"))
        .header("x-http-method-override", "DELETE")
        .body(Full::default())
        .unwrap();
    assert_problem(&send(override_header).await.unwrap(), 400);
    assert_eq!(
        world.upstream.journal().await.unwrap().len(),
        2,
        "refused requests were not forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_over_http2() {
    let world = World::start().await;
    let alice = world.token("alice").await;
    let lines: Vec<Value> = (0..5000)
        .map(|i| json!({"description": format!("line {i}"), "quantity": i}))
        .collect();
    let body = json!({"partner_id": "P-1", "amount": 1.0, "lines": lines});
    let reply = send_h2(request(
        "POST",
        &world.url("/invoices"),
        Some(&alice),
        Some(body),
    ))
    .await
    .unwrap();
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.json()["lines"].as_array().unwrap().len(), 5000);
    let event = world.gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["request"]["protocol"], "HTTP/2.0");
    let journal = world.upstream.journal().await.unwrap();
    assert_eq!(
        journal[0]["version"], "HTTP/1.1",
        "HTTP/2 in, pooled HTTP/1.1 to the upstream"
    );
    // An HTTP/2 client names the host in `:authority`, not `Host`: the upstream is told it.
    let forwarded_host = journal[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-forwarded-host")
        .map(|h| h[1].clone());
    assert_eq!(
        forwarded_host,
        Some(json!(world.gateway.url.trim_start_matches("http://"))),
        "the client's authority, not the upstream's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_http2_and_http1() {
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    let dir = TempDir::new("tls").unwrap();
    let (ca, cert, key) = invoiceguard_testkit::certificates(dir.path()).unwrap();
    let tls = format!("tls = {{ cert_file = {cert:?}, key_file = {key:?} }}");
    let gateway = GatewayProcess::start(
        Path::new(BINARY),
        &sections(&idp.issuer, &upstream.url(), &tls),
        true,
    )
    .await
    .unwrap();
    let alice = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    let client = TlsClient::new(&ca).unwrap();
    let reply = client
        .send(request(
            "GET",
            &format!("{}/invoices", gateway.url),
            Some(&alice),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.version, http::Version::HTTP_2, "ALPN picked HTTP/2");
    let journal = upstream.journal().await.unwrap();
    let proto = journal[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-forwarded-proto")
        .unwrap()[1]
        .clone();
    assert_eq!(proto, "https");
    let anonymous = client
        .send(request(
            "GET",
            &format!("{}/invoices", gateway.url),
            None,
            None,
        ))
        .await
        .unwrap();
    assert_problem(&anonymous, 401);

    // An https upstream checked against a custom CA: a front gateway forwards (with the caller's
    // token, by configuration) to the TLS gateway above, which forwards to the API.
    let front_sections = sections(&idp.issuer, &gateway.url, "").replace(
        "timeout_ms = 5000",
        &format!("timeout_ms = 5000\nca_file = {ca:?}\nforward_authorization = true"),
    );
    let front = GatewayProcess::start(Path::new(BINARY), &front_sections, false)
        .await
        .unwrap();
    let reply = get(&format!("{}/invoices/INV-1", front.url), Some(&alice))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        front.audit_event(reply.header("x-request-id"))["outcome"]["upstream_status"],
        200
    );
    assert_eq!(upstream.journal().await.unwrap().len(), 2);

    // Without the CA the upstream's certificate is refused: 502, never a silent downgrade.
    let untrusting = GatewayProcess::start(
        Path::new(BINARY),
        &sections(&idp.issuer, &gateway.url, ""),
        false,
    )
    .await
    .unwrap();
    let reply = get(&format!("{}/invoices/INV-1", untrusting.url), Some(&alice))
        .await
        .unwrap();
    assert_problem(&reply, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_and_idp_outages_answer_502_and_503() {
    let idp = Idp::start().await.unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let gateway = GatewayProcess::start(
        Path::new(BINARY),
        &sections(&idp.issuer, &closed, ""),
        false,
    )
    .await
    .unwrap();
    let alice = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    let reply = get(&format!("{}/invoices", gateway.url), Some(&alice))
        .await
        .unwrap();
    assert_problem(&reply, 502);
    let event = gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["decision"]["effect"], "allow");
    assert_eq!(event["outcome"]["error_side"], "upstream");
    assert_eq!(event["severity"], "error");

    // The IdP is down when the gateway starts: authenticated routes answer 503 (fail closed),
    // and the gateway recovers by itself once the IdP is up.
    let upstream = Upstream::start().unwrap();
    let idp_port = free_port().unwrap();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let gateway = GatewayProcess::start(
        Path::new(BINARY),
        &sections(&issuer, &upstream.url(), ""),
        false,
    )
    .await
    .unwrap();
    // A token that names the (not yet running) issuer, signed with the keys it will have.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let early = idp
        .sign(
            json!({"typ": "at+jwt"}),
            json!({"iss": issuer, "sub": "alice", "aud": "urn:invoiceguard:invoicing-api", "exp": now + 300, "roles": ["invoicing"]}),
            None,
        )
        .await
        .unwrap();
    let reply = get(&format!("{}/invoices", gateway.url), Some(&early))
        .await
        .unwrap();
    let problem = assert_problem(&reply, 503);
    assert_eq!(
        problem["type"],
        "urn:invoiceguard:problem:authentication-unavailable"
    );
    let late_idp = Idp::start_with_keys(idp.keys_file(), idp_port)
        .await
        .unwrap();
    let token = late_idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    let mut status = 0;
    for _ in 0..40 {
        status = get(&format!("{}/invoices", gateway.url), Some(&token))
            .await
            .unwrap()
            .status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        status, 200,
        "the gateway did not recover after the IdP came up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_gateway_cleanly() {
    let world = World::start().await;
    let mut gateway = world.gateway;
    assert!(
        gateway.terminate().unwrap(),
        "the gateway exited with a failure status"
    );
}

#[test]
fn check_reports_problems_with_file_and_line() {
    let dir = TempDir::new("check").unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let baseline = invoiceguard_testkit::repo_root().join("policies");
    for entry in std::fs::read_dir(&baseline).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    let config = dir.path().join("invoiceguard.toml");
    std::fs::write(
        &config,
        sections("http://127.0.0.1:1", "http://127.0.0.1:2", "").replace("{port}", "3"),
    )
    .unwrap();

    let run = || {
        std::process::Command::new(BINARY)
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let ok = run();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok: "));

    // A file sink whose folder cannot be made (a file stands where it would be): `serve` could
    // not deliver to it, so `check` says so.
    let good_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(dir.path().join("not-a-folder"), "").unwrap();
    std::fs::write(
        &config,
        format!(
            "{good_config}\n[[audit.sinks]]\nname = \"archive\"\nfile = \"not-a-folder/audit.log\"\n"
        ),
    )
    .unwrap();
    let bad = run();
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("audit.sinks[0].file"), "{out}");
    std::fs::write(&config, good_config).unwrap();

    let roles = policies.join("roles.cedar");
    let text = std::fs::read_to_string(&roles).unwrap();
    std::fs::write(
        &roles,
        text.replacen("Action::\"invoice:list\"", "Action::\"invoice:lst\"", 1),
    )
    .unwrap();
    let bad = run();
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("roles.cedar:9:"), "{out}");
    assert!(out.contains("invoice:lst"), "{out}");

    std::fs::write(&config, "[upstream]\nurl = \"http://x\"\nbogus = 1\n").unwrap();
    let bad = run();
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        out.contains("invoiceguard.toml:3:1") && out.contains("bogus"),
        "{out}"
    );
}

#[test]
fn check_fails_wherever_serve_would_for_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("check-as-nobody").unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let policies = super::policy::policy_copy(root);
    let make_readable = |path: &Path| {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    make_readable(&policies);
    for entry in std::fs::read_dir(&policies).unwrap() {
        make_readable(&entry.unwrap().path());
    }
    std::fs::create_dir_all(root.join("tls")).unwrap();
    let (ca, cert, key) = invoiceguard_testkit::certificates(&root.join("tls")).unwrap();
    make_readable(&root.join("tls"));
    for file in [&ca, &cert, &key] {
        make_readable(file);
    }
    let spool = root.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::os::unix::fs::chown(&spool, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap();
    let token = root.join("admin-token");
    std::fs::write(&token, "an-admin-token-for-tests\n").unwrap();
    make_readable(&token);
    let port = invoiceguard_testkit::free_port().unwrap();
    let good = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\nclient_ca_file = {ca:?}\ntls = {{ cert_file = {cert:?}, key_file = {key:?} }}\n\n\
         [upstream]\nurl = \"http://127.0.0.1:1\"\n\n[authn]\nissuer = \"http://127.0.0.1:2\"\naudience = [\"urn:x\"]\n\n\
         [policy]\ndir = {policies:?}\n\n[audit]\nspool = {spool:?}\n\n\
         [admin]\naddress = \"127.0.0.1:{admin}\"\ntoken_file = {token:?}\n",
        admin = invoiceguard_testkit::free_port().unwrap(),
    );
    let config = root.join("invoiceguard.toml");
    let write_config = |text: &str| {
        std::fs::write(&config, text).unwrap();
        make_readable(&config);
    };
    write_config(&good);
    let nobody = (65534, 65534, "");
    let command = |verb: &str| {
        vec![
            verb.to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ]
    };
    let check = || run_as(&command("check"), nobody, root, 20);
    let serve = || run_as(&command("serve"), nobody, root, 3);
    let (status, out) = check();
    assert_eq!(status, Some(0), "the good configuration: {out}");
    let (status, out) = serve();
    assert_eq!(status, None, "serve runs with it: {out}");

    // Each case: `serve` cannot start as this user, and `check` says why, naming the key.
    type Change<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Change, Change)> = vec![
        (
            "admin.token_file",
            Box::new(|| {
                std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o400)).unwrap()
            }),
            Box::new(|| make_readable(&token)),
        ),
        (
            "listen.tls.key_file",
            Box::new(|| {
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap()
            }),
            Box::new(|| make_readable(&key)),
        ),
        (
            "listen.client_ca_file",
            Box::new(|| write_config(&good.replace(&format!("{ca:?}"), "\"/nonexistent/ca.pem\""))),
            Box::new(|| write_config(&good)),
        ),
        (
            "audit.spool",
            Box::new(|| std::os::unix::fs::chown(&spool, Some(0), Some(0)).unwrap()),
            Box::new(|| std::os::unix::fs::chown(&spool, Some(65534), Some(65534)).unwrap()),
        ),
        (
            // Readable by others: refused, as ssh refuses such a key.
            "chmod 700",
            Box::new(|| {
                std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o750)).unwrap()
            }),
            Box::new(|| {
                std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap()
            }),
        ),
        (
            "audit.sinks[0].file",
            Box::new(|| {
                write_config(&format!(
                    "{good}\n[[audit.sinks]]\nname = \"archive\"\nfile = {:?}\n",
                    root.join("root-only/audit.log")
                ));
                std::fs::create_dir_all(root.join("root-only")).unwrap();
                std::fs::set_permissions(
                    root.join("root-only"),
                    std::fs::Permissions::from_mode(0o700),
                )
                .unwrap();
            }),
            Box::new(|| write_config(&good)),
        ),
    ];
    for (key, break_it, fix_it) in &cases {
        break_it();
        let (status, out) = check();
        assert_eq!(status, Some(1), "{key}: check passed: {out}");
        assert!(out.contains(key), "{key}: check did not name it: {out}");
        let (status, out) = serve();
        assert!(
            status.is_some_and(|code| code != 0),
            "{key}: serve started as this user, yet check said no: {out}"
        );
        fix_it();
    }
    let (status, out) = check();
    assert_eq!(status, Some(0), "fixed again: {out}");
}
