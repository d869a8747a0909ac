//! `invoiceguard evidence` over a real walk: the pack's numbers checked against the trail it came
//! from, and the HTML report opened, rendered, screenshotted and printed to PDF by headless
//! Chromium.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use invoiceguard_testkit::TokenRequest;
use serde_json::{Value, json};

use super::*;

/// A table of the pack by id: its rows.
fn table<'p>(pack: &'p Value, id: &str) -> &'p Vec<Value> {
    let found = pack["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tables"].as_array().unwrap())
        .find(|t| t["id"] == id);
    assert!(found.is_some(), "no table {id}");
    found.unwrap()["rows"].as_array().unwrap()
}

/// The row of a table whose first cell is `key`.
fn row<'p>(pack: &'p Value, id: &str, key: &str) -> &'p Vec<Value> {
    let found = table(pack, id).iter().find(|r| r[0] == key);
    assert!(found.is_some(), "no row {key} in {id}");
    found.unwrap().as_array().unwrap()
}

/// Chromium, headless, on a local file; its standard output.
fn chromium(args: &[&str], page: &Path) -> String {
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args(["--disable-dev-shm-usage", "--hide-scrollbars"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pack_matches_its_trail_and_renders_in_a_browser() {
    let dir = TempDir::new("evidence").unwrap();
    let (sink_file, token_file) = (
        dir.path().join("events.log"),
        dir.path().join("admin-token"),
    );
    std::fs::write(&token_file, "evidence-admin-token\n").unwrap();
    let unused_key = "ab".repeat(32);
    let extra = format!(
        "\n[[authn.api_keys]]\naccount = \"legacy-batch\"\nscopes = [\"invoices:read\"]\nsha256 = [\"{unused_key}\"]\n\n\
         [[audit.sinks]]\nname = \"archive\"\nfile = {sink_file:?}\n\n\
         [admin]\naddress = \"127.0.0.1:{{admin_port}}\"\ntoken_file = {token_file:?}\n\n\
         [limits]\nfailed_auth_per_ip = 3\n"
    );
    let world = World::start_audit(&extra, "").await;
    let (alice, bob, carol, dave, grace, zed) = (
        world.token("alice").await,
        world.token("bob").await,
        world.token("carol").await,
        world.token("dave").await,
        world.token("grace").await,
        world.token("zed").await,
    );
    let post = |path: &str, token: &str, body: Option<Value>| {
        send(request("POST", &world.url(path), Some(token), body))
    };
    let created = post(
        "/invoices",
        &alice,
        Some(json!({"partner_id": "P-1", "amount": 90.0})),
    )
    .await
    .unwrap();
    let invoice = created.json()["id"].as_str().unwrap().to_owned();
    post(&format!("/invoices/{invoice}/submit"), &alice, None)
        .await
        .unwrap();
    let approved = post(&format!("/invoices/{invoice}/approve"), &bob, None)
        .await
        .unwrap();
    assert_eq!(approved.status, 200);
    for limit in [10, 3] {
        let export = post("/exports", &carol, Some(json!({"limit": limit})))
            .await
            .unwrap();
        assert_eq!(export.status, 201, "{:?}", export.body);
    }
    let password = TokenRequest {
        amr: Some("pwd"),
        ..TokenRequest::default()
    };
    let alice_pwd = world.idp.user_token("alice", password).await.unwrap();
    assert_eq!(
        get(&world.url("/invoices"), Some(&alice_pwd))
            .await
            .unwrap()
            .status,
        401
    );
    let settings = json!({"company": "Example Kft.", "default_currency": "EUR"});
    let changed = send(request(
        "PUT",
        &world.url("/settings"),
        Some(&dave),
        Some(settings),
    ))
    .await
    .unwrap();
    assert_eq!(changed.status, 200);
    let break_glass = http::Request::get(world.url("/invoices/INV-1"))
        .header("authorization", format!("Bearer {zed}"))
        .header("x-break-glass-reason", "INC-4711: the ERP sync is down")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(break_glass).await.unwrap().status, 200);
    let erp = world
        .idp
        .service_token("erp-sync", "erp-sync-secret", "invoices:read")
        .await
        .unwrap();
    assert_eq!(
        get(&world.url("/invoices"), Some(&erp))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        post("/invoices/INV-1/approve", &erp, None)
            .await
            .unwrap()
            .status,
        403
    );
    // Grace leaves: revoked, then refused.
    assert_eq!(
        get(&world.url("/invoices"), Some(&grace))
            .await
            .unwrap()
            .status,
        200
    );
    let (ok, out) = run(std::process::Command::new(BINARY)
        .args(["revoke", "--config"])
        .arg(world.gateway.config_file())
        .args(["--subject", "grace", "--reason", "left the company"]));
    assert!(ok, "{out}");
    assert_eq!(
        get(&world.url("/invoices"), Some(&grace))
            .await
            .unwrap()
            .status,
        401
    );
    // Three forged tokens from this address, then it is locked out.
    for _ in 0..3 {
        let forged = get(
            &world.url("/invoices"),
            Some("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
        )
        .await
        .unwrap();
        assert_eq!(forged.status, 401);
    }
    assert_eq!(
        get(&world.url("/invoices"), Some(&bob))
            .await
            .unwrap()
            .status,
        429
    );

    let out_dir = world.gateway.dir().join("evidence");
    let (ok, out) = run(std::process::Command::new(BINARY)
        .args(["evidence", "--config"])
        .arg(world.gateway.config_file())
        .arg("--out")
        .arg(&out_dir));
    assert!(ok, "{out}");
    let pack: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("evidence.json")).unwrap())
            .unwrap();

    // Every number recounted from the trail itself.
    let events: Vec<Value> = world
        .gateway
        .audit_events()
        .into_iter()
        .filter(|e| e["stage"] == "complete")
        .collect();
    assert_eq!(pack["sources"]["events"], events.len());
    let mut people: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for event in events.iter().filter(|e| e["actor"]["type"] == "user") {
        let person = people
            .entry(event["actor"]["id"].as_str().unwrap().to_owned())
            .or_default();
        person.0 += 1;
        person.1 += u64::from(event["actor"]["mfa"] == true);
    }
    assert_eq!(table(&pack, "mfa_coverage").len(), people.len());
    for (person, (requests, with_mfa)) in &people {
        let r = row(&pack, "mfa_coverage", person);
        assert_eq!(
            (r[1].as_str().unwrap(), r[2].as_str().unwrap()),
            (requests.to_string().as_str(), with_mfa.to_string().as_str()),
            "{person}"
        );
    }
    assert_eq!(row(&pack, "logins_without_mfa", "alice")[1], "bearer_jwt");
    let rows: u64 = events
        .iter()
        .filter(|e| e["action"] == "export:create")
        .map(|e| e["outcome"]["export_rows"].as_u64().unwrap_or(0))
        .sum();
    assert!(rows > 0);
    assert_eq!(
        row(&pack, "exports_per_person", "carol")[1..3],
        [json!("2"), json!(rows.to_string())]
    );
    let locked = events
        .iter()
        .filter(|e| e["outcome"]["status"] == 429)
        .count();
    assert_eq!(row(&pack, "lockouts", "address")[4], locked.to_string());
    assert!(table(&pack, "admin_list").iter().any(|r| r[0] == "dave"));
    let administration = table(&pack, "administration");
    assert!(
        administration
            .iter()
            .any(|r| r[1] == "dave" && r[2] == "settings:update")
    );
    assert!(
        administration
            .iter()
            .any(|r| r[2] == "revocation:create" && r[3] == "Subject::grace")
    );
    let glass = table(&pack, "break_glass");
    assert_eq!(glass.len(), 1);
    assert_eq!(glass[0][2], "INC-4711: the ERP sync is down");
    let grace_row = row(&pack, "revocations", "grace");
    assert_eq!(
        (&grace_row[5], &grace_row[7]),
        (&json!("0"), &json!("1")),
        "{grace_row:?}"
    );
    assert!(table(&pack, "sod_denials").is_empty());
    let changes = table(&pack, "policy_changes");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0][1], "policy:loaded");
    let legacy = row(&pack, "integration_accounts", "legacy-batch");
    assert_eq!(
        (&legacy[2], &legacy[5]),
        (&json!("abababababab"), &json!("0"))
    );
    let erp_row = row(&pack, "integration_accounts", "erp-sync");
    assert_eq!((&erp_row[5], &erp_row[6]), (&json!("2"), &json!("1")));
    let delivery = table(&pack, "delivery");
    assert_eq!(
        (&delivery[0][1], &delivery[0][2]),
        (&json!("archive"), &json!("file"))
    );
    let chain = table(&pack, "chain_verification");
    assert_eq!(chain[0][4], "yes", "{chain:?}");
    assert!(
        table(&pack, "decision_cases")
            .iter()
            .all(|c| c[2] == "passed")
    );
    for id in ["exports", "role_matrix", "mfa_coverage"] {
        assert!(out_dir.join(format!("csv/{id}.csv")).is_file(), "{id}.csv");
    }

    // The report in a real browser: rendered, screenshotted, printed.
    let page = out_dir.join("evidence.html");
    let dom = chromium(&["--dump-dom"], &page);
    for anchor in [
        "id=\"controls\"",
        "id=\"role_matrix\"",
        "id=\"requests_chart\"",
        "id=\"exports_chart\"",
    ] {
        assert!(dom.contains(anchor), "{anchor} not rendered");
    }
    assert!(dom.contains(&format!("<td id=\"events\">{} (", events.len())));
    assert!(dom.contains("INC-4711: the ERP sync is down"));
    let screenshot: PathBuf = out_dir.join("evidence.png");
    chromium(
        &[
            "--window-size=1280,2400",
            &format!("--screenshot={}", screenshot.display()),
        ],
        &page,
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let pdf_file = out_dir.join("evidence.pdf");
    chromium(
        &[
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={}", pdf_file.display()),
        ],
        &page,
    );
    let pdf = std::fs::read(&pdf_file).unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    // One page at least per section: each starts a page when printed.
    let pages = pdf
        .windows(b"/Type /Page\n".len())
        .filter(|w| w.starts_with(b"/Type /Page") && !w.starts_with(b"/Type /Pages"))
        .count();
    assert!(pages >= 12, "{pages} pages");
}
