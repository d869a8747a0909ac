//! Operating the gateway: metrics that move with traffic, readiness that tells the truth, traces
//! that continue to the upstream, a SIGTERM that lets slow requests finish without losing their
//! events, listener certificates replaced on disk, and TLS at both hops with mTLS to the ERP.

use rustls::pki_types::pem::PemObject;

use super::sinks::metric;
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_requests_are_allowed_and_denied_with_bounded_labels() {
    let world = World::start().await;
    let g = &world.gateway;
    let alice = world.token("alice").await;
    let allowed = "invoiceguard_requests_total{action=\"invoice:read\",decision=\"allow\",route=\"/invoices/{id}\",status=\"2xx\"}";
    let denied = "invoiceguard_requests_total{action=\"settings:update\",decision=\"deny\",route=\"/settings\",status=\"4xx\"}";
    let bad_token = "invoiceguard_authentication_failures_total{reason=\"malformed_token\"}";
    let evaluations = "invoiceguard_policy_evaluation_seconds_count";
    let before = [
        metric(g, allowed).await,
        metric(g, denied).await,
        metric(g, bad_token).await,
        metric(g, evaluations).await,
    ];
    for _ in 0..3 {
        assert_eq!(
            get(&world.url("/invoices/INV-1"), Some(&alice))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let refused = send(request(
        "PUT",
        &world.url("/settings"),
        Some(&alice),
        Some(json!({})),
    ))
    .await
    .unwrap();
    assert_eq!(refused.status, 403);
    get(&world.url("/invoices/INV-1"), Some("not.a.jwt"))
        .await
        .unwrap();
    let after = [
        metric(g, allowed).await,
        metric(g, denied).await,
        metric(g, bad_token).await,
        metric(g, evaluations).await,
    ];
    assert_eq!(after[0] - before[0], 3.0, "allowed reads");
    assert_eq!(after[1] - before[1], 1.0, "denied settings change");
    assert_eq!(after[2] - before[2], 1.0, "refused token");
    assert_eq!(
        after[3] - before[3],
        4.0,
        "one policy evaluation per authenticated request"
    );
    assert!(metric(g, "invoiceguard_jwks_refreshes_total{result=\"ok\"}").await >= 1.0);
    // The set loaded at start is `initial`; no reload happened yet.
    assert_eq!(
        metric(g, "invoiceguard_policy_reloads_total{result=\"initial\"}").await,
        1.0
    );
    assert_eq!(
        metric(g, "invoiceguard_policy_reloads_total{result=\"loaded\"}").await,
        0.0
    );
    let text = String::from_utf8(
        get(&format!("{}/metrics", g.admin_url), None)
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("invoiceguard_policy_version_info{version=\""));
    assert!(text.contains("invoiceguard_request_duration_seconds_bucket{route=\"/invoices/{id}\""));
    // Labels are templates, never users or raw paths.
    assert!(!text.contains("alice") && !text.contains("INV-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_set_at_start_keeps_the_gateway_unready_until_it_is_fixed() {
    let dir = TempDir::new("broken-policies").unwrap();
    let policies = super::policy::policy_copy(dir.path());
    let roles = policies.join("roles.cedar");
    let good = std::fs::read_to_string(&roles).unwrap();
    std::fs::write(
        &roles,
        format!("{good}\npermit (principal, action, resource"),
    )
    .unwrap();
    let world = World::start_with("", Some(&policies), "watch_ms = 100").await;
    let alice = world.token("alice").await;
    let ready = get(&format!("{}/readyz", world.gateway.admin_url), None)
        .await
        .unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["policies_loaded"], false);
    let refused = get(&world.url("/invoices/INV-1"), Some(&alice))
        .await
        .unwrap();
    let problem = assert_problem(&refused, 503);
    assert_eq!(
        problem["type"],
        "urn:invoiceguard:problem:decision-unavailable"
    );
    let event = world.gateway.audit_event(refused.header("x-request-id"));
    assert_eq!(event["decision"]["reason"], "policy_unavailable");
    assert!(world.upstream.journal().await.unwrap().is_empty());

    std::fs::write(&roles, good).unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = get(&format!("{}/readyz", world.gateway.admin_url), None)
            .await
            .unwrap()
            .status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "ready once the folder is fixed");
    assert_eq!(
        get(&world.url("/invoices/INV-1"), Some(&alice))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trace_continues_to_the_upstream_and_into_the_audit_event() {
    let world = World::start().await;
    let alice = world.token("alice").await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let reply = send(
        Request::get(world.url("/invoices/INV-1"))
            .header("authorization", format!("Bearer {alice}"))
            .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
            .header("tracestate", "congo=t61rcWkgMzE")
            .body(Full::default())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let untraced = get(&world.url("/invoices/INV-1"), Some(&alice))
        .await
        .unwrap();
    let journal = world.upstream.journal().await.unwrap();
    let header = |entry: &Value, name: &str| {
        entry["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
    };
    let sent = header(&journal[0], "traceparent").unwrap();
    assert!(sent.starts_with(&format!("00-{trace}-")), "{sent}");
    assert!(sent.ends_with("-01"));
    assert!(
        !sent.contains("b7ad6b7169203331"),
        "the gateway's span is the parent"
    );
    assert_eq!(
        header(&journal[0], "tracestate").as_deref(),
        Some("congo=t61rcWkgMzE")
    );
    assert_eq!(
        world.gateway.audit_event(reply.header("x-request-id"))["trace_id"],
        trace
    );
    // Without a traceparent the gateway starts the trace; the event names it.
    let started = header(&journal[1], "traceparent").unwrap();
    let event = world.gateway.audit_event(untraced.header("x-request-id"));
    assert_eq!(started[3..35], *event["trace_id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_slow_requests_finish_and_loses_no_audit_event() {
    slow_requests_finish_at_sigterm("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_threaded_gateway_lets_slow_requests_finish_at_sigterm() {
    slow_requests_finish_at_sigterm("worker_threads = 1").await;
}

async fn slow_requests_finish_at_sigterm(listen_extra: &str) {
    let mut world = World::start_with_listen(
        listen_extra,
        "[[audit.sinks]]\nname = \"archive\"\nfile = \"archive.log\"\n",
        None,
        "",
    )
    .await;
    let alice = world.token("alice").await;
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let (url, alice) = (world.url("/invoices/INV-1?delay_ms=1500"), alice.clone());
            tokio::spawn(async move { get(&url, Some(&alice)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let gateway = &mut world.gateway;
    let clean = tokio::task::block_in_place(|| gateway.terminate()).unwrap();
    let mut ids = Vec::new();
    for request in slow {
        let reply = request.await.unwrap().unwrap();
        assert_eq!(reply.status, 200, "an in-flight request finished");
        ids.push(reply.header("x-request-id").to_owned());
    }
    assert!(clean, "the gateway exited cleanly");
    // Their events are in the spool, and the sink delivered them before the gateway exited.
    let archive = std::fs::read_to_string(gateway.dir().join("archive.log")).unwrap();
    for id in &ids {
        gateway.audit_event(id);
        assert!(
            archive.contains(id.as_str()),
            "{id} was delivered before exit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_after_sighup() {
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    let (old, new) = (
        TempDir::new("cert-old").unwrap(),
        TempDir::new("cert-new").unwrap(),
    );
    let (old_ca, cert, key) = invoiceguard_testkit::certificates(old.path()).unwrap();
    let (new_ca, new_cert, new_key) = invoiceguard_testkit::certificates(new.path()).unwrap();
    let listen = format!("tls = {{ cert_file = {cert:?}, key_file = {key:?} }}");
    let gateway = GatewayProcess::start(
        Path::new(BINARY),
        &sections(&idp.issuer, &upstream.url(), &listen),
        true,
    )
    .await
    .unwrap();
    let health = || request("GET", &format!("{}/invoices", gateway.url), None, None);
    let trusting_old = TlsClient::new(&old_ca).unwrap();
    let trusting_new = TlsClient::new(&new_ca).unwrap();
    assert_eq!(trusting_old.send(health()).await.unwrap().status, 401);
    assert!(
        trusting_new.send(health()).await.is_err(),
        "not yet the new certificate"
    );

    // Replaced the way cert-manager or an operator does: new files renamed over the old ones.
    for (from, to) in [(&new_cert, &cert), (&new_key, &key)] {
        let temporary = to.with_extension("new");
        std::fs::copy(from, &temporary).unwrap();
        std::fs::rename(&temporary, to).unwrap();
    }
    gateway.hangup().unwrap();
    let mut switched = false;
    for _ in 0..50 {
        if trusting_new.send(health()).await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "the new certificate is served after SIGHUP");
    // The connection opened before keeps its certificate; a new one gets the new certificate.
    assert_eq!(trusting_old.send(health()).await.unwrap().status, 401);
    let fresh = TlsClient::new(&old_ca).unwrap();
    assert!(
        fresh.send(health()).await.is_err(),
        "new connections get the new certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_at_both_hops_with_a_client_certificate_to_the_upstream() {
    let idp = Idp::start().await.unwrap();
    let dir = TempDir::new("both-hops").unwrap();
    let (ca, cert, key) = invoiceguard_testkit::certificates(dir.path()).unwrap();
    let (client_cert, client_key) =
        invoiceguard_testkit::client_certificate(dir.path(), "gateway.invoiceguard.test").unwrap();
    let upstream = Upstream::start_mtls(&cert, &key, &ca).unwrap();
    let config = |client: &str| {
        format!(
            "[listen]\naddress = \"127.0.0.1:{{port}}\"\ntls = {{ cert_file = {cert:?}, key_file = {key:?} }}\n\n\
             [upstream]\nurl = \"{}\"\nca_file = {ca:?}\n{client}\n\n\
             [authn]\nissuer = \"{}\"\naudience = [\"urn:invoiceguard:invoicing-api\"]\n\
             mfa_acr = [\"urn:invoiceguard:acr:mfa\"]\n",
            upstream.url(),
            idp.issuer
        )
    };
    let with_cert =
        format!("client_cert = {{ cert_file = {client_cert:?}, key_file = {client_key:?} }}");
    let gateway = GatewayProcess::start(Path::new(BINARY), &config(&with_cert), true)
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
            &format!("{}/invoices/INV-1", gateway.url),
            Some(&alice),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["id"], "INV-1");
    // The upstream saw the gateway's client certificate.
    let inspector = TlsClient::with_client_certificate(&ca, &client_cert, &client_key).unwrap();
    let journal = upstream.journal_with(Some(&inspector)).await.unwrap();
    let der = rustls::pki_types::CertificateDer::pem_file_iter(&client_cert)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        journal[0]["client_certificate"].as_str(),
        Some(invoicing_api::sha256_hex(der.as_ref()).as_str())
    );
    assert_eq!(
        journal[0]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "x-invoiceguard-subject")
            .unwrap()[1],
        "alice"
    );

    // Without the client certificate the ERP refuses the gateway: the client gets 502.
    let without = GatewayProcess::start(Path::new(BINARY), &config(""), true)
        .await
        .unwrap();
    let reply = client
        .send(request(
            "GET",
            &format!("{}/invoices/INV-1", without.url),
            Some(&alice),
            None,
        ))
        .await
        .unwrap();
    assert_problem(&reply, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_in_the_clients_trace_and_logs_are_json() {
    spans_exported_and_logs_json("").await;
}

/// The same on a single-threaded runtime (what a gateway with one CPU runs on): requests are
/// served, and at SIGTERM the span batches are flushed without waiting on the blocked runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_threaded_gateway_serves_and_exports_its_spans_at_sigterm() {
    spans_exported_and_logs_json("worker_threads = 1").await;
}

async fn spans_exported_and_logs_json(listen_extra: &str) {
    let otlp = invoiceguard_testkit::HttpCollector::start().unwrap();
    let mut world = World::start_with_listen(
        listen_extra,
        &format!(
            "[telemetry]\nlog_format = \"json\"\notlp_endpoint = \"http://{}/v1/traces\"\nservice_name = \"gw-test\"\n",
            otlp.addr
        ),
        None,
        "",
    )
    .await;
    let alice = world.token("alice").await;
    let trace = "5b8efff798038103d269b633813fc60c";
    let reply = send(
        Request::get(world.url("/invoices/INV-1"))
            .header("authorization", format!("Bearer {alice}"))
            .header("traceparent", format!("00-{trace}-eee19b7ec3c1b174-01"))
            .body(Full::default())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let workers = metric(&world.gateway, "invoiceguard_worker_threads").await;
    if listen_extra.contains("worker_threads = 1") {
        assert_eq!(workers, 1.0, "single-threaded");
    } else {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(workers, cpus as f64, "one worker per CPU");
    }
    // The upstream is told the exported span is its parent.
    let journal = world.upstream.journal().await.unwrap();
    let sent = journal[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "traceparent")
        .unwrap()[1]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sent.starts_with(&format!("00-{trace}-")), "{sent}");
    let gateway_span = sent[36..52].to_owned();
    // A failed request is logged (as JSON) with its request id: the upstream goes away.
    drop(std::mem::replace(
        &mut world.upstream,
        Upstream::start().unwrap(),
    ));
    let failed = get(&world.url("/invoices/INV-1"), Some(&alice))
        .await
        .unwrap();
    assert_eq!(failed.status, 502);
    // At SIGTERM the buffered spans are exported.
    let gateway = &mut world.gateway;
    assert!(tokio::task::block_in_place(|| gateway.terminate()).unwrap());
    let exported = otlp.raw_bodies().concat();
    let bytes = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    let contains = |needle: &[u8]| exported.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(&bytes(trace)),
        "the client's trace id was exported"
    );
    assert!(
        contains(&bytes(&gateway_span)),
        "the span the upstream was told of"
    );
    assert!(
        contains(&bytes("eee19b7ec3c1b174")),
        "the client's span as parent"
    );
    for name in ["request", "authenticate", "authorize", "forward", "gw-test"] {
        assert!(
            contains(name.as_bytes()),
            "span or service `{name}` exported"
        );
    }
    let logged = gateway.stderr_text();
    let line = logged
        .lines()
        .find(|l| l.contains(failed.header("x-request-id")));
    assert!(
        line.is_some(),
        "no log line for the failed request in:\n{logged}"
    );
    let line = line.unwrap();
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["fields"]["message"], "request failed");
    // Spans are the exporter's: log lines name the request id themselves and carry no span.
    assert!(line.get("span").is_none(), "{line}");
}
