//! Policy end to end: segregation of duties with history (the creator recorded at creation, or
//! looked up from the upstream), approval limits, failing closed, and export quotas reserved
//! before the decision under concurrency.

use super::*;

/// Creates an invoice through the gateway as `user` and submits it; returns its id.
async fn submitted_invoice(world: &World, user: &str, amount: f64) -> String {
    let token = world.token(user).await;
    let created = send(request(
        "POST",
        &world.url("/invoices"),
        Some(&token),
        Some(json!({"partner_id": "P-1", "amount": amount})),
    ))
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let submitted = send(request(
        "POST",
        &world.url(&format!("/invoices/{id}/submit")),
        Some(&token),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(submitted.status, 200, "{:?}", submitted.body);
    id
}

async fn approve(world: &World, user: &str, id: &str) -> Reply {
    let token = world.token(user).await;
    send(request(
        "POST",
        &world.url(&format!("/invoices/{id}/approve")),
        Some(&token),
        None,
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_creator_of_an_invoice_never_approves_it() {
    let world = World::start().await;
    // Grace issues and approves invoices; she cannot approve her own.
    let id = submitted_invoice(&world, "grace", 120.0).await;
    let own = approve(&world, "grace", &id).await;
    assert_problem(&own, 403);
    let event = world.gateway.audit_event(own.header("x-request-id"));
    assert_eq!(
        event["decision"]["policies"],
        json!(["sod.creator-never-approves"])
    );
    // Another approver can.
    let other = approve(&world, "frank", &id).await;
    assert_eq!(other.status, 200, "{:?}", other.body);
    assert_eq!(other.json()["approved_by"], "frank");
    // An admin who also holds the approver role cannot.
    let id = submitted_invoice(&world, "alice", 50.0).await;
    let admin = approve(&world, "henry", &id).await;
    assert_problem(&admin, 403);
    assert_eq!(
        world.gateway.audit_event(admin.header("x-request-id"))["decision"]["policies"],
        json!(["sod.admin-never-approves"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_created_before_the_gateway_are_looked_up() {
    let world = World::start().await;
    // Created at the upstream directly (before the gateway was deployed): the gateway has no record.
    let direct = Request::post(format!("{}/invoices", world.upstream.url()))
        .header("content-type", "application/json")
        .header("x-invoiceguard-subject", "grace")
        .body(Full::new(Bytes::from(
            json!({"partner_id": "P-2", "amount": 80.0}).to_string(),
        )))
        .unwrap();
    let id = send(direct).await.unwrap().json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let submit = Request::post(format!("{}/invoices/{id}/submit", world.upstream.url()))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(submit).await.unwrap().status, 200);
    let own = approve(&world, "grace", &id).await;
    assert_problem(&own, 403);
    assert_eq!(
        world.gateway.audit_event(own.header("x-request-id"))["decision"]["policies"],
        json!(["sod.creator-never-approves"])
    );
    // The lookup went to the upstream as the gateway itself.
    let journal = world.upstream.journal().await.unwrap();
    let lookup = journal
        .iter()
        .find(|e| e["method"] == "GET" && e["target"] == format!("/invoices/{id}"))
        .unwrap();
    assert!(
        lookup["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-invoiceguard-principal-type" && h[1] == "gateway")
    );
    // Approving an invoice that does not exist is a plain 404 for an approver; whoever may not
    // approve gets the same 403 whether the invoice exists or not (no existence oracle).
    assert_problem(&approve(&world, "frank", "INV-999").await, 404);
    let missing = approve(&world, "erin", "INV-999").await;
    assert_problem(&missing, 403);
    let existing = approve(&world, "erin", &id).await;
    assert_problem(&existing, 403);
    assert_eq!(missing.json()["detail"], existing.json()["detail"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_never_approve_above_their_limit() {
    let world = World::start().await;
    let id = submitted_invoice(&world, "alice", 20000.0).await;
    let frank = approve(&world, "frank", &id).await;
    assert_problem(&frank, 403);
    assert_eq!(
        world.gateway.audit_event(frank.header("x-request-id"))["decision"]["policies"],
        json!(["limits.approval-limit"])
    );
    // Bob's own limit (50000) is higher than the approver role's (10000).
    assert_eq!(approve(&world, "bob", &id).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_fail_closed_when_the_facts_cannot_be_had() {
    let idp = Idp::start().await.unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let gateway = GatewayProcess::start(
        Path::new(BINARY),
        &sections(&idp.issuer, &closed, ""),
        false,
    )
    .await
    .unwrap();
    let bob = idp
        .user_token("bob", TokenRequest::default())
        .await
        .unwrap();
    let reply = send(request(
        "POST",
        &format!("{}/invoices/INV-1/approve", gateway.url),
        Some(&bob),
        None,
    ))
    .await
    .unwrap();
    let problem = assert_problem(&reply, 503);
    assert_eq!(
        problem["type"],
        "urn:invoiceguard:problem:decision-unavailable"
    );
    let event = gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["decision"]["effect"], "deny");
    assert_eq!(event["decision"]["reason"], "unavailable");
    // A route that needs no facts is simply not answered by the upstream.
    assert_problem(
        &get(&format!("{}/invoices", gateway.url), Some(&bob))
            .await
            .unwrap(),
        502,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exports_never_pass_the_daily_quota() {
    let world = World::start().await;
    let carol = world.token("carol").await;
    // 400 more invoices, straight at the example API, so that every export below returns the
    // rows it asked for and its reservation is kept whatever the order the requests run in.
    for i in 0..400 {
        let created = send(
            Request::post(format!("{}/invoices", world.upstream.url()))
                .header("x-invoiceguard-subject", "alice")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    json!({"partner_id": "P-2", "amount": 10.0 + f64::from(i)}).to_string(),
                )))
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(created.status, 201);
    }
    // Carol's quota is 1000 rows a day; three exports of 400 rows at once.
    let exports: Vec<_> = (0..3)
        .map(|_| {
            let (url, token) = (world.url("/exports"), carol.clone());
            tokio::spawn(async move {
                send(request(
                    "POST",
                    &url,
                    Some(&token),
                    Some(json!({"limit": 400})),
                ))
                .await
                .unwrap()
            })
        })
        .collect();
    let mut served = 0;
    for export in exports {
        let reply = export.await.unwrap();
        let event = world.gateway.audit_event(reply.header("x-request-id"));
        if reply.status == 201 {
            served += 1;
            assert_eq!(event["outcome"]["export_rows"], 400);
        } else {
            assert_problem(&reply, 403);
            assert_eq!(
                event["decision"]["policies"],
                json!(["limits.export-daily-quota"])
            );
        }
    }
    assert_eq!(
        served, 2,
        "two reservations of 400 fit in 1000, a third does not"
    );
    // 200 rows are left today.
    let again = send(request(
        "POST",
        &world.url("/exports"),
        Some(&carol),
        Some(json!({"limit": 150})),
    ))
    .await
    .unwrap();
    assert_eq!(
        again.status,
        201,
        "{:?} {}",
        again.body,
        world.gateway.audit_event(again.header("x-request-id"))
    );
    // Without a limit the request reserves everything left (50 rows): that is a bulk export,
    // charged what the answer held.
    let unbounded = send(request(
        "POST",
        &world.url("/exports"),
        Some(&carol),
        Some(json!({})),
    ))
    .await
    .unwrap();
    assert_eq!(unbounded.status, 201, "{:?}", unbounded.body);
    let event = world.gateway.audit_event(unbounded.header("x-request-id"));
    assert!(event["outcome"]["export_rows"].as_u64().unwrap() >= 400);
    // The day's quota is spent: even one row more is refused.
    let spent = send(request(
        "POST",
        &world.url("/exports"),
        Some(&carol),
        Some(json!({"limit": 1})),
    ))
    .await
    .unwrap();
    assert_problem(&spent, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_export_needs_a_fresh_multi_factor_login() {
    let world = World::start().await;
    let stale = world
        .idp
        .user_token(
            "carol",
            TokenRequest {
                auth_age: Some(3600),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reply = send(request(
        "POST",
        &world.url("/exports"),
        Some(&stale),
        Some(json!({"limit": 800})),
    ))
    .await
    .unwrap();
    assert_problem(&reply, 401);
    let challenge = reply.header("www-authenticate");
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("acr_values=\"urn:invoiceguard:acr:mfa\"")
            && challenge.ends_with("max_age=\"300\""),
        "{challenge}"
    );
    // A small export needs no fresh login; a fresh login may ask to export in bulk, which then
    // waits for another person's approval (approvals.rs).
    let small = send(request(
        "POST",
        &world.url("/exports"),
        Some(&stale),
        Some(json!({"limit": 100})),
    ))
    .await
    .unwrap();
    assert_eq!(small.status, 201);
    let fresh = world.token("carol").await;
    let bulk = send(request(
        "POST",
        &world.url("/exports"),
        Some(&fresh),
        Some(json!({"limit": 800})),
    ))
    .await
    .unwrap();
    assert_problem(&bulk, 403);
    assert_eq!(
        bulk.json()["type"],
        "urn:invoiceguard:problem:approval-required",
        "{:?}",
        bulk.body
    );
}

/// A copy of the baseline policy folder (without its tests) in `dir`.
pub(crate) fn policy_copy(dir: &Path) -> std::path::PathBuf {
    let copy = dir.join("policies");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(invoiceguard_testkit::repo_root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
    }
    copy
}

/// Replaces a file the way deployment tools do: write beside it, then rename over it.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The baseline's roles.cedar with the invoicing role also reading reports.
fn roles_with_reports_for_invoicing(policies: &Path) -> String {
    std::fs::read_to_string(policies.join("roles.cedar"))
        .unwrap()
        .replacen(
            "Action::\"partner:list\", Action::\"partner:read\"\n  ],",
            "Action::\"partner:list\", Action::\"partner:read\", Action::\"report:read\"\n  ],",
            1,
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reload_while_requests_flow_and_a_broken_set_is_refused() {
    let dir = TempDir::new("reload").unwrap();
    let policies = policy_copy(dir.path());
    let world = World::start_with("", Some(&policies), "watch_ms = 200").await;
    let (gateway, alice) = (&world.gateway, world.token("alice").await);
    let url = format!("{}/reports/summary", gateway.url);
    assert_eq!(get(&url, Some(&alice)).await.unwrap().status, 403);

    // Requests flow without pause while the policy file is replaced.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flow = {
        let (url, alice, stop) = (url.clone(), alice.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && statuses.len() < 20_000 {
                statuses.push(get(&url, Some(&alice)).await.map(|r| r.status).unwrap_or(0));
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = gateway.audit_events().last().unwrap()["decision"]["policy_version"].clone();
    replace(
        &policies.join("roles.cedar"),
        &roles_with_reports_for_invoicing(&policies),
    );
    let mut allowed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if get(&url, Some(&alice)).await.unwrap().status == 200 {
            allowed = true;
            break;
        }
    }
    assert!(allowed, "the new decision never applied");

    // A broken set is refused: the last good one keeps serving, and `check` names the problem.
    let good = std::fs::read_to_string(policies.join("roles.cedar")).unwrap();
    replace(
        &policies.join("roles.cedar"),
        &good.replacen("permit (", "permit (\n  principal ==,", 1),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = flow.await.unwrap();
    assert_eq!(
        get(&url, Some(&alice)).await.unwrap().status,
        200,
        "the last good set keeps serving"
    );
    let first_allowed = statuses
        .iter()
        .position(|s| *s == 200)
        .expect("the flow saw the new set");
    assert!(statuses.len() > 20, "{} requests flowed", statuses.len());
    assert!(
        statuses[..first_allowed].iter().all(|s| *s == 403),
        "before: {:?}",
        &statuses[..first_allowed]
    );
    assert!(
        statuses[first_allowed..].iter().all(|s| *s == 200),
        "no request failed during the swap"
    );
    let after = gateway.audit_events().last().unwrap()["decision"]["policy_version"].clone();
    assert_ne!(before, after, "audit events name the set that decided");
    let check = std::process::Command::new(BINARY)
        .args(["check", "--config"])
        .arg(gateway.config_file())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(
        out.contains("roles.cedar:7:15: unexpected token `,`"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policies() {
    let dir = TempDir::new("sighup").unwrap();
    let policies = policy_copy(dir.path());
    let world = World::start_with("", Some(&policies), "watch_ms = 0").await;
    let (gateway, alice) = (&world.gateway, world.token("alice").await);
    let url = format!("{}/reports/summary", gateway.url);
    replace(
        &policies.join("roles.cedar"),
        &roles_with_reports_for_invoicing(&policies),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(&url, Some(&alice)).await.unwrap().status,
        403,
        "not watching: nothing changes by itself"
    );
    gateway.hangup().unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = get(&url, Some(&alice)).await.unwrap().status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "SIGHUP reloaded the policies");
    assert_eq!(
        super::sinks::metric(
            gateway,
            "invoiceguard_policy_reloads_total{result=\"loaded\"}"
        )
        .await,
        1.0,
        "a reload counts as `loaded`, the start as `initial`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_policy_set_is_evaluated_but_never_decides() {
    let dir = TempDir::new("shadow").unwrap();
    let candidate = policy_copy(dir.path());
    replace(
        &candidate.join("roles.cedar"),
        &roles_with_reports_for_invoicing(&candidate),
    );
    let world = World::start_with("", None, &format!("shadow_dir = {candidate:?}")).await;
    let (gateway, alice) = (&world.gateway, world.token("alice").await);

    let reply = get(&format!("{}/reports/summary", gateway.url), Some(&alice))
        .await
        .unwrap();
    assert_problem(&reply, 403);
    let event = gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(
        event["decision"]["effect"], "deny",
        "the enforced set decides"
    );
    assert_eq!(event["decision"]["shadow"]["effect"], "allow");
    assert_eq!(
        event["decision"]["shadow"]["policies"],
        json!(["role.invoicing"])
    );
    assert_ne!(
        event["decision"]["shadow"]["policy_version"],
        event["decision"]["policy_version"]
    );

    let same = get(&format!("{}/invoices", gateway.url), Some(&alice))
        .await
        .unwrap();
    assert_eq!(same.status, 200);
    assert_eq!(
        gateway.audit_event(same.header("x-request-id"))["decision"]["shadow"],
        Value::Null,
        "only differences are recorded"
    );
}

#[test]
fn policy_test_and_explain_serve_the_security_team() {
    let run = |args: &[&str]| {
        std::process::Command::new(BINARY)
            .args(args)
            .output()
            .unwrap()
    };
    let baseline = invoiceguard_testkit::repo_root().join("policies");
    let baseline = baseline.to_str().unwrap();
    let passed = run(&["policy", "test", baseline]);
    let out = String::from_utf8_lossy(&passed.stdout);
    assert!(passed.status.success(), "{out}");
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");

    // A case that no longer holds fails the command, naming the case and what differed.
    let dir = TempDir::new("cases").unwrap();
    let copy = policy_copy(dir.path());
    std::fs::create_dir_all(copy.join("tests")).unwrap();
    std::fs::write(
        copy.join("tests/wrong.toml"),
        "[[case]]\nname = \"admins approve\"\nprincipal = { user = \"dave\", roles = [\"admin\", \"approver\"] }\n\
         request = \"POST /invoices/INV-1/approve\"\nresource = { creator = \"alice\", amount = 5 }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let failed = run(&["policy", "test", copy.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED wrong.toml: admins approve: expected Allow by [], got Deny by [\"sod.admin-never-approves\"]"), "{out}");

    let explained = run(&[
        "policy",
        "explain",
        "POST",
        "/invoices/INV-7/approve",
        "--dir",
        baseline,
        "--user",
        "grace",
        "--roles",
        "invoicing,approver",
        "--creator",
        "grace",
        "--amount",
        "100",
    ]);
    let out = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.status.success(), "{out}");
    assert!(
        out.contains("decision: deny\npolicies: sod.creator-never-approves"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_needs_a_stated_reason_and_is_flagged_critical() {
    let world = World::start().await;
    let zed = world.token("zed").await;
    let settings = |reason: Option<&str>| {
        let mut builder = Request::put(world.url("/settings"))
            .header("authorization", format!("Bearer {zed}"))
            .header("content-type", "application/json");
        if let Some(reason) = reason {
            builder = builder.header("x-break-glass-reason", reason);
        }
        builder
            .body(Full::new(Bytes::from(
                json!({"company": "Example Kft."}).to_string(),
            )))
            .unwrap()
    };
    let refused = send(settings(None)).await.unwrap();
    assert_problem(&refused, 403);
    assert_eq!(
        world.gateway.audit_event(refused.header("x-request-id"))["decision"]["policies"],
        json!(["break-glass.reason-required"])
    );

    let reason = "INC-4711: restore the e-invoicing network settings";
    let allowed = send(settings(Some(reason))).await.unwrap();
    assert_eq!(allowed.status, 200, "{:?}", allowed.body);
    let event = world.gateway.audit_event(allowed.header("x-request-id"));
    assert_eq!(event["severity"], "critical");
    assert_eq!(event["break_glass_reason"], reason);
    assert_eq!(
        event["decision"]["policies"],
        json!(["break-glass.with-stated-reason"])
    );
    let journal = world.upstream.journal().await.unwrap();
    let forwarded = journal
        .iter()
        .flat_map(|e| e["headers"].as_array().unwrap())
        .filter(|h| h[0] == "x-break-glass-reason")
        .count();
    assert_eq!(forwarded, 0, "the reason stays with the gateway");

    // A reason that is not printable text is a bad request, and still audited as critical.
    let bad = send(settings(Some(&"x".repeat(300)))).await.unwrap();
    assert_problem(&bad, 400);
    // Break-glass never approves invoices, reason or not.
    let approve = Request::post(world.url("/invoices/INV-1/approve"))
        .header("authorization", format!("Bearer {zed}"))
        .header("x-break-glass-reason", "INC-4711")
        .body(Full::default())
        .unwrap();
    let reply = send(approve).await.unwrap();
    assert_problem(&reply, 403);
    assert_eq!(
        world.gateway.audit_event(reply.header("x-request-id"))["severity"],
        "critical"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looked_up_invoice_attributes_reach_the_policies() {
    let dir = TempDir::new("entity").unwrap();
    let policies = policy_copy(dir.path());
    // The security team restricts approvals in one legal entity to EUR invoices still submitted.
    std::fs::write(
        policies.join("companies.cedar"),
        "@id(\"company.de-eur-only\")\nforbid (principal, action == Action::\"invoice:approve\", resource is Invoice)\n\
         when { resource has company && resource.company == \"EXAMPLE-DE\" }\n\
         unless { resource has currency && resource.currency == \"EUR\" && resource has status && resource.status == \"submitted\" };\n",
    )
    .unwrap();
    let world = World::start_with("", Some(&policies), "").await;
    let gateway = &world.gateway;
    let (alice, bob) = (world.token("alice").await, world.token("bob").await);
    let mut ids = Vec::new();
    for (company, currency) in [
        ("EXAMPLE-DE", "USD"),
        ("EXAMPLE-DE", "EUR"),
        ("EXAMPLE-HU", "USD"),
    ] {
        let body =
            json!({"partner_id": "P-1", "amount": 10.0, "company": company, "currency": currency});
        let created = send(request(
            "POST",
            &format!("{}/invoices", gateway.url),
            Some(&alice),
            Some(body),
        ))
        .await
        .unwrap();
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let submit = send(request(
            "POST",
            &format!("{}/invoices/{id}/submit", gateway.url),
            Some(&alice),
            None,
        ))
        .await
        .unwrap();
        assert_eq!(submit.status, 200);
        ids.push(id);
    }
    let approve = |id: &str| {
        request(
            "POST",
            &format!("{}/invoices/{id}/approve", gateway.url),
            Some(&bob),
            None,
        )
    };
    let refused = send(approve(&ids[0])).await.unwrap();
    assert_problem(&refused, 403);
    assert_eq!(
        gateway.audit_event(refused.header("x-request-id"))["decision"]["policies"],
        json!(["company.de-eur-only"])
    );
    assert_eq!(send(approve(&ids[1])).await.unwrap().status, 200);
    assert_eq!(send(approve(&ids[2])).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_sized_in_the_query_is_read_strictly_and_charged() {
    let world = World::start().await;
    let carol = world.token("carol").await;
    let export = |query: &str| {
        let url = world.url(&format!("/invoices/export?{query}"));
        let carol = carol.clone();
        async move { get(&url, Some(&carol)).await.unwrap() }
    };
    // Every size the upstream could read otherwise than the gateway: 400 before any decision.
    for query in [
        "limit=1e9",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=10&limit=100000",
        "limit=0",
        "limit=100001",
        "format=csv&limit=%2B5",
    ] {
        let reply = export(query).await;
        assert_problem(&reply, 400);
        let event = world.gateway.audit_event(reply.header("x-request-id"));
        assert_eq!(event["decision"]["reason"], "bad_request", "{query}");
        assert_eq!(event["action"], "export:create", "{query}");
        assert!(event["outcome"]["upstream_status"].is_null(), "{query}");
    }
    // A plain size passes and is charged the rows returned, as CSV or JSON.
    let reply = export("limit=2&format=csv").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("content-type"), "text/csv");
    // The rows: the lines but the header and the watermark's trailing `#` line.
    let text = String::from_utf8_lossy(&reply.body);
    let rows = text.lines().filter(|line| !line.starts_with('#')).count() - 1;
    assert!((1..=2).contains(&rows), "{rows} rows");
    let event = world.gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(event["outcome"]["export_rows"], rows);
    assert_eq!(event["category"], "export");
    let reply = export("format=json&limit=1").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["rows"].as_array().unwrap().len(), 1);
    // Over the daily quota (1,000 rows for an accountant): refused by the policies, outright —
    // no approval could lift the quota, so none is asked for.
    let reply = export("limit=5000").await;
    assert_problem(&reply, 403);
    assert_eq!(
        reply.json()["type"],
        "urn:invoiceguard:problem:access-denied"
    );
    let event = world.gateway.audit_event(reply.header("x-request-id"));
    assert_eq!(
        event["decision"]["policies"],
        json!([
            "approvals.bulk-export-needs-approval",
            "limits.export-daily-quota"
        ])
    );
}

/// Runs `invoiceguard policy ARGS…`; its standard output.
fn policy_cli(args: &[&std::ffi::OsStr]) -> String {
    let (ok, out) = run(std::process::Command::new(BINARY).arg("policy").args(args));
    assert!(ok, "{out}");
    out
}

/// The policy events in the trail, as (action, detail).
fn policy_events(gateway: &GatewayProcess) -> Vec<(String, String)> {
    gateway
        .audit_events()
        .into_iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("policy:"))
        })
        .map(|e| {
            assert_eq!(e["category"], "administration");
            assert_eq!(e["severity"], "high");
            (
                e["action"].as_str().unwrap().to_owned(),
                e["decision"]["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Sends SIGHUP and waits for the next policy event.
async fn hangup_and_wait(gateway: &GatewayProcess) -> (String, String) {
    let before = policy_events(gateway).len();
    gateway.hangup().unwrap();
    for _ in 0..100 {
        if let Some(event) = policy_events(gateway).get(before) {
            return event.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (String::new(), "no policy event after SIGHUP".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_signed_policy_set_loads_and_every_reload_is_on_the_trail() {
    let dir = TempDir::new("signed").unwrap();
    let policies = policy_copy(dir.path());
    let (key, wrong_key) = (dir.path().join("signer.pem"), dir.path().join("wrong.pem"));
    let public = policy_cli(&["keygen".as_ref(), "--out".as_ref(), key.as_os_str()]);
    let public = public.lines().next().unwrap().trim().to_owned();
    policy_cli(&["keygen".as_ref(), "--out".as_ref(), wrong_key.as_os_str()]);
    let sign = |key: &Path| {
        policy_cli(&[
            "sign".as_ref(),
            policies.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ])
    };
    sign(&key);
    let validated = policy_cli(&[
        "validate".as_ref(),
        policies.as_os_str(),
        "--signed-by".as_ref(),
        public.as_ref(),
    ]);
    assert!(validated.contains(&format!("by {public}")), "{validated}");
    let world = World::start_with(
        "",
        Some(&policies),
        &format!("watch_ms = 0\nsigned_by = [\"{public}\"]"),
    )
    .await;
    let gateway = &world.gateway;
    let loaded = policy_events(gateway);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].0, "policy:loaded");
    assert!(
        loaded[0].1.contains(&format!("signed by {public}")),
        "{}",
        loaded[0].1
    );

    // Requests flow all along; none may fail while sets are refused and replaced.
    let alice = world.token("alice").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (url, stop) = (world.url("/invoices/INV-1"), stop.clone());
        async move {
            let (mut sent, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                sent += 1;
                failed += usize::from(get(&url, Some(&alice)).await.unwrap().status != 200);
            }
            (sent, failed)
        }
    });
    let original = std::fs::read_to_string(policies.join("roles.cedar")).unwrap();
    replace(
        &policies.join("roles.cedar"),
        &roles_with_reports_for_invoicing(&policies),
    );
    // Edited after signing: refused, the signed set keeps serving.
    let (action, detail) = hangup_and_wait(gateway).await;
    assert_eq!(action, "policy:reload_refused", "{detail}");
    assert!(detail.contains("`roles.cedar` changed"), "{detail}");
    // Signed, but by a key the gateway does not trust: refused.
    sign(&wrong_key);
    let (action, detail) = hangup_and_wait(gateway).await;
    assert_eq!(action, "policy:reload_refused", "{detail}");
    assert!(detail.contains("not in policy.signed_by"), "{detail}");
    let reports = world.url("/reports/summary");
    let alice = world.token("alice").await;
    assert_eq!(get(&reports, Some(&alice)).await.unwrap().status, 403);
    // Signed by the trusted key: applied, with what changed.
    sign(&key);
    let (action, detail) = hangup_and_wait(gateway).await;
    assert_eq!(action, "policy:reloaded", "{detail}");
    assert!(
        detail.contains("files changed: roles.cedar; policies changed: role.invoicing"),
        "{detail}"
    );
    assert_eq!(get(&reports, Some(&alice)).await.unwrap().status, 200);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, failed) = traffic.await.unwrap();
    assert!(
        sent > 10 && failed == 0,
        "{failed} of {sent} requests failed"
    );
    // `policy diff` tells the same change.
    let before = dir.path().join("before");
    std::fs::create_dir_all(&before).unwrap();
    for entry in std::fs::read_dir(&policies).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, before.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(before.join("roles.cedar"), original).unwrap();
    std::fs::remove_file(before.join("policy.sig")).unwrap();
    let diff = policy_cli(&["diff".as_ref(), before.as_os_str(), policies.as_os_str()]);
    assert!(diff.contains("policy changed: role.invoicing"), "{diff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_set_is_replayed_over_the_recorded_traffic() {
    let world = World::start().await;
    let (alice, bob, carol) = (
        world.token("alice").await,
        world.token("bob").await,
        world.token("carol").await,
    );
    // A walk: reads, a refused settings change, and two invoices approved by bob (300 and 40).
    for (token, method, path) in [
        (&alice, "GET", "/invoices"),
        (&alice, "GET", "/invoices/INV-1"),
        (&bob, "GET", "/invoices"),
        (&carol, "GET", "/invoices"),
        (&alice, "PUT", "/settings"),
    ] {
        let body = (method == "PUT").then(|| json!({"company": "X"}));
        send(request(method, &world.url(path), Some(token), body))
            .await
            .unwrap();
    }
    let mut approvals = Vec::new();
    for amount in [300.0, 40.0] {
        let created = send(request(
            "POST",
            &world.url("/invoices"),
            Some(&alice),
            Some(json!({"partner_id": "P-1", "amount": amount, "currency": "EUR"})),
        ))
        .await
        .unwrap();
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let submit = format!("/invoices/{id}/submit");
        send(request("POST", &world.url(&submit), Some(&alice), None))
            .await
            .unwrap();
        let approve = format!("/invoices/{id}/approve");
        let approved = send(request("POST", &world.url(&approve), Some(&bob), None))
            .await
            .unwrap();
        assert_eq!(approved.status, 200, "{:?}", approved.body);
        approvals.push(approved.header("x-request-id").to_owned());
    }
    let dir = invoiceguard_testkit::TempDir::new("replay").unwrap();
    let replay = |candidate: &Path, format: &str| {
        run(std::process::Command::new(BINARY)
            .args(["policy", "replay", "--format", format, "--candidate"])
            .arg(candidate)
            .arg(&world.gateway.spool))
    };
    // The set in force, replayed: nothing changes (exit 0).
    let baseline = invoiceguard_testkit::repo_root().join("policies");
    let (same, out) = replay(&baseline, "table");
    assert!(same, "{out}");
    assert!(
        out.contains("11 decision(s) replayed, 11 unchanged, 0 changed"),
        "{out}"
    );

    // A candidate that tightens approvals: bob may approve up to 100 (entities.toml). Exactly
    // the approval of 300 flips, decided now by the approval limit; the one of 40 does not.
    let candidate = policy_copy(dir.path());
    let entities = std::fs::read_to_string(candidate.join("entities.toml")).unwrap();
    std::fs::write(
        candidate.join("entities.toml"),
        entities.replace(
            "[users.bob]\napproval_limit = 50000",
            "[users.bob]\napproval_limit = 100",
        ),
    )
    .unwrap();
    let (same, out) = replay(&candidate, "json");
    assert!(!same, "a change is exit 1: {out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["replayed"], 11);
    assert_eq!(report["unchanged"], 10);
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{report}");
    assert_eq!(changes[0]["change"], "allow→deny");
    assert_eq!(changes[0]["action"], "invoice:approve");
    assert_eq!(changes[0]["principal"], "bob");
    assert_eq!(changes[0]["policies"], json!(["limits.approval-limit"]));
    assert_eq!(changes[0]["recorded_policies"], json!(["role.approver"]));
    assert_eq!(changes[0]["count"], 1);
    let example = changes[0]["examples"][0].as_str().unwrap();
    assert!(example.contains(&approvals[0]), "{example}");
    // Events written before decisions carried their inputs are counted, never guessed.
    let old = dir.path().join("old.jsonl");
    let mut event: Value = serde_json::from_str(
        world
            .gateway
            .audit_text()
            .lines()
            .find(|l| l.contains("\"invoice:list\""))
            .unwrap(),
    )
    .unwrap();
    event["decision"].as_object_mut().unwrap().remove("inputs");
    std::fs::write(&old, format!("{event}\n")).unwrap();
    let (_, out) = run(std::process::Command::new(BINARY)
        .args(["policy", "replay", "--candidate"])
        .arg(&candidate)
        .arg(&old));
    assert!(
        out.contains("0 decision(s) replayed") && out.contains("1 event(s) not replayable"),
        "{out}"
    );

    // The evidence pack carries the same replay as a section of its own.
    let pack = dir.path().join("pack");
    let (ok, out) = run(std::process::Command::new(BINARY)
        .args(["evidence", "--config"])
        .arg(world.gateway.config_file())
        .arg("--replay-candidate")
        .arg(&candidate)
        .arg("--out")
        .arg(&pack));
    assert!(ok, "{out}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(pack.join("evidence.json")).unwrap())
            .unwrap();
    let section = json["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "policy_change")
        .cloned();
    assert!(section.is_some(), "no replay section");
    let rows = section.unwrap()["tables"][0]["rows"].clone();
    assert_eq!(rows[0][0], "allow→deny", "{rows}");
    assert_eq!(rows[0][2], "invoice:approve", "{rows}");
    assert_eq!(rows[0][3], "bob", "{rows}");
}
