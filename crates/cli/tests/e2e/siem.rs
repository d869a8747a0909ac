//! The SIEM rules of `deploy/siem/rules`: converted with pySigma (Splunk, Elasticsearch, SQLite
//! backends) and run over the audit events of a real walk loaded into SQLite
//! (`tests/siem/run_rules.py`). Each rule fires on its scenario's events and on nothing of the
//! ordinary work around them.

use std::collections::{BTreeMap, BTreeSet};

use invoiceguard_testkit::TokenRequest;
use serde_json::{Value, json};

use super::*;

/// The request id of a reply.
fn id(reply: &invoiceguard_testkit::Reply) -> String {
    reply.header("x-request-id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_fires_on_its_scenario_and_not_on_ordinary_work() {
    // A sink whose collector never answers: it lags, and says so in the trail after a second.
    let dead = free_port().unwrap();
    let extra = format!(
        "\n[[audit.sinks]]\nname = \"lagging\"\nhttp = \"http://127.0.0.1:{dead}/events\"\n\n[limits]\nfailed_auth_per_ip = 3\n"
    );
    let world = World::start_audit(&extra, "lag_alert_s = 1").await;
    let token = |user: &'static str| world.token(user);
    let (alice, bob, carol, dave, grace, zed) = (
        token("alice").await,
        token("bob").await,
        token("carol").await,
        token("dave").await,
        token("grace").await,
        token("zed").await,
    );
    let post = |path: &str, token: &str, body: Option<Value>| {
        send(request("POST", &world.url(path), Some(token), body))
    };

    // Ordinary work: create, submit, approve by another, read, a small export, an integration's
    // read, a denied settings change by someone without the right (a refusal, not a change).
    let mut ordinary = Vec::new();
    let created = post(
        "/invoices",
        &alice,
        Some(json!({"partner_id": "P-1", "amount": 90.0})),
    )
    .await
    .unwrap();
    let invoice = created.json()["id"].as_str().unwrap().to_owned();
    ordinary.push(id(&created));
    ordinary.push(id(&post(
        &format!("/invoices/{invoice}/submit"),
        &alice,
        None,
    )
    .await
    .unwrap()));
    ordinary.push(id(&post(
        &format!("/invoices/{invoice}/approve"),
        &bob,
        None,
    )
    .await
    .unwrap()));
    ordinary.push(id(&get(&world.url("/invoices/INV-1"), Some(&carol))
        .await
        .unwrap()));
    ordinary.push(id(&post("/exports", &carol, Some(json!({"limit": 10})))
        .await
        .unwrap()));
    let erp = world
        .idp
        .service_token("erp-sync", "erp-sync-secret", "invoices:read")
        .await
        .unwrap();
    ordinary.push(id(&get(&world.url("/invoices"), Some(&erp)).await.unwrap()));
    let refused = send(request(
        "PUT",
        &world.url("/settings"),
        Some(&alice),
        Some(json!({"company": "X"})),
    ))
    .await
    .unwrap();
    assert_eq!(refused.status, 403);
    ordinary.push(id(&refused));

    // The scenarios, each with the rules it must fire.
    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut expect = |rules: &[&'static str], request_id: String| {
        for rule in rules {
            expected.entry(rule).or_default().insert(request_id.clone());
        }
    };
    let break_glass = http::Request::get(world.url("/invoices/INV-1"))
        .header("authorization", format!("Bearer {zed}"))
        .header("x-break-glass-reason", "INC-4711: the ERP sync is down")
        .body(Full::default())
        .unwrap();
    let reply = send(break_glass).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    expect(&["break-glass-used.yml"], id(&reply));

    let password = || TokenRequest {
        amr: Some("pwd"),
        ..TokenRequest::default()
    };
    let carol_pwd = world.idp.user_token("carol", password()).await.unwrap();
    let reply = post("/exports", &carol_pwd, Some(json!({"limit": 600})))
        .await
        .unwrap();
    assert_eq!(
        reply.status, 401,
        "a bulk export needs a fresh MFA login: {:?}",
        reply.body
    );
    expect(&["bulk-export.yml", "step-up-refused.yml"], id(&reply));

    // Four eyes: Carol's bulk export held for approval, Bob approves it, Carol's export uses it.
    let carol_fresh = world.token("carol").await;
    let held = send(request(
        "GET",
        &world.url("/invoices/export?limit=700"),
        Some(&carol_fresh),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(held.status, 403, "{:?}", held.body);
    expect(&["export-approval.yml"], id(&held));
    let approval = held.json()["approval_request"].as_str().unwrap().to_owned();
    let bob_fresh = world.token("bob").await;
    let approved = send(request(
        "POST",
        &world.url(&format!("/.invoiceguard/approvals/{approval}/approve")),
        Some(&bob_fresh),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    expect(&["export-approval.yml"], id(&approved));
    let used = send(request(
        "GET",
        &world.url("/invoices/export?limit=700"),
        Some(&carol_fresh),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(used.status, 200, "{:?}", used.body);
    expect(&["export-approval.yml"], id(&used));

    // Alice's password-only token, tried three times where MFA is required: a burst.
    let alice_pwd = world.idp.user_token("alice", password()).await.unwrap();
    for _ in 0..3 {
        let reply = get(&world.url("/invoices"), Some(&alice_pwd))
            .await
            .unwrap();
        assert_eq!(reply.status, 401);
        expect(&["step-up-refused.yml", "step-up-burst.yml"], id(&reply));
    }

    let settings = json!({"company": "Example Kft.", "default_currency": "EUR"});
    let reply = send(request(
        "PUT",
        &world.url("/settings"),
        Some(&dave),
        Some(settings),
    ))
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    expect(&["admin-change.yml"], id(&reply));

    let own = post(
        "/invoices",
        &grace,
        Some(json!({"partner_id": "P-2", "amount": 40.0})),
    )
    .await
    .unwrap();
    let own_id = own.json()["id"].as_str().unwrap().to_owned();
    ordinary.push(id(&own));
    ordinary.push(id(&post(
        &format!("/invoices/{own_id}/submit"),
        &grace,
        None,
    )
    .await
    .unwrap()));
    let reply = post(&format!("/invoices/{own_id}/approve"), &grace, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 403);
    expect(&["sod-denial.yml"], id(&reply));

    let reply = post("/invoices/INV-1/approve", &erp, None).await.unwrap();
    assert_eq!(reply.status, 403);
    expect(&["integration-denied.yml"], id(&reply));

    // Last: three forged tokens from this address, then it is locked out.
    for _ in 0..3 {
        let reply = get(
            &world.url("/invoices"),
            Some("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 401);
    }
    let reply = get(&world.url("/invoices"), Some(&bob)).await.unwrap();
    assert_eq!(reply.status, 429);
    expect(&["brute-force-lockout.yml"], id(&reply));

    // The lagging sink's event, once it is in the trail.
    let mut lagging = None;
    for _ in 0..100 {
        lagging = world
            .gateway
            .audit_events()
            .into_iter()
            .find(|e| e["action"] == "audit:sink_lagging");
        if lagging.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let lagging = lagging.unwrap();
    assert!(
        lagging["decision"]["detail"]
            .as_str()
            .unwrap()
            .contains("`lagging`")
    );
    expect(
        &["audit-delivery-lagging.yml"],
        lagging["request_id"].as_str().unwrap().to_owned(),
    );

    // The policy set the gateway started with is a change of permissions: an admin change.
    let loaded = world
        .gateway
        .audit_events()
        .into_iter()
        .find(|e| e["action"] == "policy:loaded")
        .unwrap();
    expect(
        &["admin-change.yml"],
        loaded["request_id"].as_str().unwrap().to_owned(),
    );

    // The trail, converted and run.
    let results = run_rules(&world.gateway);
    let rules = results.as_object().unwrap();
    assert_eq!(
        rules.len(),
        14,
        "{}",
        rules.keys().cloned().collect::<Vec<_>>().join(" ")
    );
    for (rule, result) in rules {
        let matched: BTreeSet<String> = result["matched"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect();
        let want = expected.get(rule.as_str()).cloned().unwrap_or_default();
        assert_eq!(matched, want, "{rule}");
        assert!(
            ordinary.iter().all(|id| !matched.contains(id)),
            "{rule} fired on ordinary work"
        );
        assert!(
            !result["splunk"][0].as_str().unwrap().is_empty(),
            "{rule}: no Splunk query"
        );
        assert!(
            !result["elasticsearch"][0].as_str().unwrap().is_empty(),
            "{rule}: no Elasticsearch query"
        );
    }
}

/// Every rule of `deploy/siem/rules` converted and run over a gateway's trail
/// (`tests/siem/run_rules.py`): for each rule file, the request ids it matched and its queries.
pub(crate) fn run_rules(gateway: &invoiceguard_testkit::GatewayProcess) -> Value {
    let file = gateway.spool.with_extension("siem.jsonl");
    std::fs::write(&file, gateway.audit_text()).unwrap();
    let root = invoiceguard_testkit::repo_root();
    let (ok, out) = run(
        std::process::Command::new(root.join("target/tools/bin/python"))
            .arg(root.join("tests/siem/run_rules.py"))
            .arg(root.join("deploy/siem/rules"))
            .arg(&file),
    );
    assert!(ok, "{out}");
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}
