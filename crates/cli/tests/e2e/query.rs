//! `invoiceguard audit query` over a real trail with known content: each named question answers
//! exactly what happened, in order.

use serde_json::{Value, json};

use super::*;

/// Runs `audit query SPOOL ARGS… --format jsonl`; its lines as JSON.
fn query(world: &World, args: &[&str]) -> Vec<Value> {
    let output = std::process::Command::new(BINARY)
        .args(["audit", "query"])
        .arg(&world.gateway.spool)
        .args(args)
        .args(["--format", "jsonl"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_five_questions_are_answered_from_the_trail() {
    let world = World::start().await;
    let (alice, bob, carol, dave) = (
        world.token("alice").await,
        world.token("bob").await,
        world.token("carol").await,
        world.token("dave").await,
    );
    let invoice = json!({"partner_id": "P-1", "amount": 250.0});
    let created = send(request(
        "POST",
        &world.url("/invoices"),
        Some(&alice),
        Some(invoice),
    ))
    .await
    .unwrap();
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let at = |path: &str| world.url(&format!("/invoices/{id}{path}"));
    let steps = [
        (&alice, "POST", at("/submit"), 200),
        (&alice, "POST", at("/approve"), 403),
        (&bob, "POST", at("/approve"), 200),
    ];
    for (token, method, url, status) in steps {
        let reply = send(request(method, &url, Some(token), None))
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{method} {url}: {:?}", reply.body);
    }
    let export = json!({"limit": 10});
    let reply = send(request(
        "POST",
        &world.url("/exports"),
        Some(&carol),
        Some(export),
    ))
    .await
    .unwrap();
    assert_eq!(reply.status, 201, "{:?}", reply.body);
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
    let reply = get(&world.url("/invoices"), Some("not-a-token"))
        .await
        .unwrap();
    assert_eq!(reply.status, 401);

    // Which user created, submitted and approved the invoice — in order, the denial included.
    let history: Vec<(Value, Value, Value)> = query(&world, &["--invoice", &id])
        .into_iter()
        .map(|e| {
            (
                e["actor"]["id"].clone(),
                e["action"].clone(),
                e["decision"]["effect"].clone(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            (json!("alice"), json!("invoice:create"), json!("allow")),
            (json!("alice"), json!("invoice:submit"), json!("allow")),
            (json!("alice"), json!("invoice:approve"), json!("deny")),
            (json!("bob"), json!("invoice:approve"), json!("allow")),
        ]
    );
    // Who logged in, how (MFA), and the refused credential.
    let logins = query(&world, &["--who-logged-in"]);
    for name in ["alice", "bob", "carol", "dave"] {
        let login = logins.iter().find(|l| l["actor"] == name).unwrap();
        assert_eq!(
            (login["method"].clone(), login["mfa"].clone()),
            (json!("bearer_jwt"), json!(true))
        );
    }
    let alice_requests = logins.iter().find(|l| l["actor"] == "alice").unwrap();
    assert_eq!(
        (
            alice_requests["requests"].clone(),
            alice_requests["denied"].clone()
        ),
        (json!(3), json!(1))
    );
    assert!(
        logins
            .iter()
            .any(|l| l["refused_credentials"] == true && l["count"] == 1)
    );
    // Who exported, and how much.
    let exports = query(&world, &["--exports"]);
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0]["actor"]["id"], "carol");
    assert!(query(&world, &["--exports", "--bulk"]).is_empty());
    // Who changed settings.
    let changes = query(&world, &["--admin-changes"]);
    let changed: Vec<_> = changes
        .iter()
        .map(|e| (e["actor"]["id"].clone(), e["action"].clone()))
        .collect();
    // The policy set loaded at start is a change of permissions too (the gateway's own).
    assert_eq!(
        changed,
        [
            (Value::Null, json!("policy:loaded")),
            (json!("dave"), json!("settings:update"))
        ]
    );
    // CSV: a header and one row per event.
    let output = std::process::Command::new(BINARY)
        .args(["audit", "query"])
        .arg(&world.gateway.spool)
        .args(["--actor", "bob", "--format", "csv"])
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("time,actor,action,resource,decision,status"));
    assert!(
        lines[1].contains("invoice:approve") && lines[1].contains(&id),
        "{csv}"
    );
}
