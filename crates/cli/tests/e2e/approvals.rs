//! Four eyes on bulk exports, through the real IdP and the example API: an export of more than
//! 500 rows is refused with `approval-required` and recorded as an export request; only another
//! person whom the policies allow (an approver, not the requester, with a fresh MFA login)
//! approves it at `/.invoiceguard/approvals`; the requester's same export then passes once, and
//! only until the approval expires. Every step is an audit event of category `export`.

use serde_json::{Value, json};

use super::{Reply, World, assert_problem, request, send};
use invoiceguard_testkit::TokenRequest;

/// A GET of the query-sized CSV export.
async fn export(world: &World, token: &str, query: &str) -> Reply {
    send(request(
        "GET",
        &world.url(&format!("/invoices/export?{query}")),
        Some(token),
        None,
    ))
    .await
    .unwrap()
}

/// A call to the approvals endpoint.
async fn approvals(world: &World, method: &str, path: &str, token: &str) -> Reply {
    send(request(
        method,
        &world.url(&format!("/.invoiceguard/approvals{path}")),
        Some(token),
        None,
    ))
    .await
    .unwrap()
}

/// The export request id of an `approval-required` refusal.
fn requested(reply: &Reply) -> String {
    assert_problem(reply, 403);
    let body = reply.json();
    assert_eq!(
        body["type"], "urn:invoiceguard:problem:approval-required",
        "{body}"
    );
    let id = body["approval_request"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(id.starts_with("AR-"), "{body}");
    assert_eq!(
        body["approval_url"],
        format!("/.invoiceguard/approvals/{id}")
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_export_waits_for_another_persons_approval_and_passes_once() {
    let world = World::start().await;
    let carol = world.token("carol").await;
    let bob = world.token("bob").await;

    // Asked: refused, recorded, and the approvers can see it.
    let refused = export(&world, &carol, "limit=800&format=csv").await;
    let id = requested(&refused);
    let event = world.gateway.audit_event(refused.header("x-request-id"));
    assert_eq!(event["decision"]["reason"], "approval_required");
    assert_eq!(
        event["decision"]["policies"],
        json!(["approvals.bulk-export-needs-approval"])
    );
    assert_eq!(event["category"], "export");
    assert_eq!(event["severity"], "high");
    assert_eq!(
        event["decision"]["detail"],
        format!("another person's approval required: export request {id}")
    );
    let listed = approvals(&world, "GET", "", &bob).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let pending = listed.json()["pending"].clone();
    let mine = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .cloned();
    assert!(mine.is_some(), "{pending}");
    let mine = mine.unwrap();
    assert_eq!(mine["requester"], "carol");
    assert_eq!(mine["rows"], 800);
    assert_eq!(mine["export"], "GET /invoices/export?format=csv&limit=800");
    // Nobody without the right sees or decides it: the requester herself, an auditor.
    let erin = world.token("erin").await;
    assert!(
        approvals(&world, "GET", "", &erin).await.json()["pending"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for (who, token) in [("the requester", &carol), ("an auditor", &erin)] {
        let reply = approvals(&world, "POST", &format!("/{id}/approve"), token).await;
        assert_problem(&reply, 403);
        assert_eq!(
            reply.json()["type"],
            "urn:invoiceguard:problem:access-denied",
            "{who}"
        );
    }
    // An id that names no export request (another shape, a store key's syntax): 404.
    for bad in [
        "/AR-0000",
        "/approvals:pending",
        "/grant-00/approve",
        "/AR-%2A",
    ] {
        let method = if bad.ends_with("approve") {
            "POST"
        } else {
            "GET"
        };
        assert_problem(&approvals(&world, method, bad, &bob).await, 404);
    }
    // An approver whose login is not fresh is asked to log in again (RFC 9470).
    let stale = world
        .idp
        .user_token(
            "bob",
            TokenRequest {
                auth_age: Some(3600),
                ..TokenRequest::default()
            },
        )
        .await
        .unwrap();
    let reply = approvals(&world, "POST", &format!("/{id}/approve"), &stale).await;
    assert_problem(&reply, 401);
    assert!(reply.header("www-authenticate").contains("max_age=\"300\""));
    // Until it is approved, the export stays refused (a new request each time).
    let again = export(&world, &carol, "limit=800&format=csv").await;
    assert_ne!(requested(&again), id);

    // Approved by bob with a fresh MFA login.
    let approved = approvals(&world, "POST", &format!("/{id}/approve"), &bob).await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    assert_eq!(approved.json()["status"], "approved");
    assert_eq!(approved.json()["decided_by"], "bob");
    let decision = world.gateway.audit_event(approved.header("x-request-id"));
    assert_eq!(decision["action"], "export:approve_request");
    assert_eq!(decision["actor"]["id"], "bob");
    assert_eq!(
        decision["resource"],
        json!({"type": "ExportRequest", "id": id})
    );
    assert_eq!(
        decision["decision"]["policies"],
        json!(["approvals.approvers-approve-exports"])
    );
    assert_eq!(
        (decision["category"].as_str(), decision["severity"].as_str()),
        (Some("export"), Some("high"))
    );
    // Decided once: a second decision is refused.
    let twice = approvals(&world, "POST", &format!("/{id}/reject"), &bob).await;
    assert_problem(&twice, 400);

    // A bigger export than the one approved is another export: refused.
    let bigger = export(&world, &carol, "limit=900&format=csv").await;
    requested(&bigger);
    // Someone else's same export is not carol's: refused.
    let ivy = world.token("ivy").await;
    requested(&export(&world, &ivy, "limit=800&format=csv").await);
    // The approved export passes, once (the parameters in any order: the same export).
    let passed = export(&world, &carol, "format=csv&limit=800").await;
    assert_eq!(passed.status, 200, "{:?}", passed.body);
    let used = world.gateway.audit_event(passed.header("x-request-id"));
    assert_eq!(
        used["decision"]["detail"],
        format!("approved by bob (export request {id}, 800 rows)")
    );
    assert_eq!(used["severity"], "high");
    let reused = export(&world, &carol, "limit=800&format=csv").await;
    requested(&reused);
    let status = approvals(&world, "GET", &format!("/{id}"), &carol).await;
    assert_eq!(status.json()["status"], "used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_approves_their_own_export_and_approvals_expire() {
    // The approvers' hook: a collector standing in for a chat or ticketing webhook.
    let hook = invoiceguard_testkit::HttpCollector::start().unwrap();
    let secret_dir = invoiceguard_testkit::TempDir::new("hook").unwrap();
    let secret = secret_dir.path().join("hook.secret");
    std::fs::write(&secret, "Bearer hook-s3cret\n").unwrap();
    let world = World::start_with(
        &format!(
            "\n[approvals]\nttl_s = 2\nwebhook = \"{}\"\nwebhook_auth_header_file = {secret:?}\n",
            hook.url()
        ),
        None,
        "",
    )
    .await;
    // Ivy is an accountant and an approver: she may approve exports, never her own.
    let ivy = world.token("ivy").await;
    let id = {
        let mut request = request(
            "GET",
            &world.url("/invoices/export?limit=700"),
            Some(&ivy),
            None,
        );
        request.headers_mut().insert(
            "x-export-reason",
            "quarter close, ticket FIN-123".parse().unwrap(),
        );
        requested(&send(request).await.unwrap())
    };
    // The approvers are told, with the reason given.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let told = loop {
        let found = hook
            .bodies()
            .into_iter()
            .filter_map(|body| serde_json::from_str::<Value>(&body).ok())
            .find(|body| body["id"] == id.as_str());
        if let Some(body) = found {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook was not called"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(told["event"], "export_request");
    assert_eq!(told["requester"], "ivy");
    assert_eq!(told["rows"], 700);
    assert_eq!(told["reason"], "quarter close, ticket FIN-123");
    assert!(
        hook.authorizations()
            .iter()
            .any(|a| a == "Bearer hook-s3cret")
    );
    let own = approvals(&world, "POST", &format!("/{id}/approve"), &ivy).await;
    assert_problem(&own, 403);
    let event = world.gateway.audit_event(own.header("x-request-id"));
    assert_eq!(
        event["decision"]["policies"],
        json!(["approvals.never-your-own-export"])
    );
    assert_eq!(event["category"], "export");

    // Rejected: the export stays refused.
    let frank = world.token("frank").await;
    let rejected = approvals(&world, "POST", &format!("/{id}/reject"), &frank).await;
    assert_eq!(rejected.json()["status"], "rejected");
    requested(&export(&world, &ivy, "limit=700").await);

    // Approved, then left past its time: no longer usable.
    let id = requested(&export(&world, &ivy, "limit=600").await);
    let approved = approvals(&world, "POST", &format!("/{id}/approve"), &frank).await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    requested(&export(&world, &ivy, "limit=600").await);
    // Gone from the pending list once expired.
    let listed: Value = approvals(&world, "GET", "", &frank).await.json();
    assert!(
        listed["pending"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != id.as_str())
    );
}
