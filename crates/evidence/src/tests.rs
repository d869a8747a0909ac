//! Tests of the pack: a trail with known content, each section's numbers checked against it;
//! the role matrix against the baseline policies; the chain verified and a changed event found;
//! the HTML and CSV escaped.

use std::path::{Path, PathBuf};

use invoiceguard_audit::{Chain, GENESIS};
use invoiceguard_policy::{PolicyConfig, PolicyEngine};
use serde_json::{Value, json};

use super::*;

/// A folder removed when the test ends.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "invoiceguard-evidence-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The baseline policy folder of the repository.
fn engine() -> (PolicyEngine, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let engine = PolicyEngine::load(&PolicyConfig {
        dir: dir.clone(),
        ..Default::default()
    })
    .unwrap();
    (engine, dir)
}

/// Who called: id, type, MFA, roles.
type Who<'a> = Option<(&'a str, &'a str, bool, &'a [&'a str])>;

/// An event as the gateway writes it, with the fields a test sets.
fn event(
    time: &str,
    who: Who<'_>,
    action: &str,
    resource: (&str, &str),
    effect: &str,
    status: u16,
) -> Value {
    let category = match action {
        a if a.starts_with("export:") => "export",
        a if a.starts_with("settings:") => "administration",
        a if a.starts_with("revocation:") => "revocation",
        _ if who.is_some_and(|w| w.1 == "service_account") => "integration",
        _ => "authorization",
    };
    json!({
        "event_id": "e", "seq": 0, "stage": "complete", "time": time, "instance": "gw-1",
        "request_id": format!("r-{time}"), "trace_id": null,
        "actor": who.map(|(id, kind, mfa, roles)| json!({"type": kind, "id": id, "roles": roles, "scopes": [],
            "client_id": null, "auth_method": if kind == "service_account" { "api_key" } else { "bearer_jwt" },
            "amr": [], "acr": null, "mfa": mfa})),
        "source": {"ip": "10.0.0.7", "user_agent": null},
        "request": {"method": if action.ends_with(":read") { "GET" } else { "POST" }, "path": "/x",
            "route": null, "protocol": "HTTP/1.1"},
        "action": action, "resource": {"type": resource.0, "id": resource.1},
        "break_glass_reason": null,
        "decision": {"effect": effect, "reason": "policy", "policies": [], "policy_version": "v1",
            "detail": null, "shadow": null},
        "outcome": {"status": status, "upstream_status": null, "duration_ms": 1.0,
            "response_bytes": null, "error_side": null, "export_rows": null},
        "severity": if effect == "deny" { "warning" } else { "info" },
        "category": category,
        "prev_hash": "",
    })
}

/// Writes events as a chained trail (seq from 1, each `prev_hash` the hash of the line before).
fn write_trail(path: &Path, events: &mut [Value]) {
    let chain = Chain::plain();
    let mut prev = GENESIS.to_owned();
    let mut text = String::new();
    for (i, event) in events.iter_mut().enumerate() {
        event["seq"] = json!(i as u64 + 1);
        event["prev_hash"] = json!(prev);
        let line = event.to_string();
        prev = chain.hash(line.as_bytes());
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The trail every test reads: known people, exports, a revocation and what came after it.
fn known_events() -> Vec<Value> {
    let invoicing: &[&str] = &["invoicing"];
    let accountant: &[&str] = &["accountant"];
    let admin: &[&str] = &["admin", "approver"];
    let alice = Some(("alice", "user", true, invoicing));
    let dave = Some(("dave", "user", false, invoicing));
    let carol = Some(("carol", "user", true, accountant));
    let root = Some(("root", "user", true, admin));
    let erp = Some(("erp-sync", "service_account", false, &[][..]));
    let mut events = vec![
        // Before the period.
        event(
            "2026-11-30T23:59:00Z",
            alice,
            "invoice:read",
            ("Invoice", "INV-0"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T08:00:00Z",
            alice,
            "invoice:create",
            ("Invoice", "*"),
            "allow",
            201,
        ),
        event(
            "2026-12-01T08:01:00Z",
            alice,
            "invoice:read",
            ("Invoice", "INV-1"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T08:02:00Z",
            dave,
            "invoice:read",
            ("Invoice", "INV-1"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T08:03:00Z",
            dave,
            "invoice:approve",
            ("Invoice", "INV-1"),
            "deny",
            403,
        ),
        event(
            "2026-12-01T09:00:00Z",
            carol,
            "export:create",
            ("Export", "*"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T09:05:00Z",
            carol,
            "export:create",
            ("Export", "*"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T09:10:00Z",
            erp,
            "invoice:read",
            ("Invoice", "INV-1"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T09:11:00Z",
            erp,
            "invoice:read",
            ("Invoice", "INV-2"),
            "allow",
            502,
        ),
        event(
            "2026-12-01T09:12:00Z",
            erp,
            "partner:update",
            ("Partner", "P-1"),
            "deny",
            403,
        ),
        event(
            "2026-12-01T10:00:00Z",
            root,
            "settings:update",
            ("Settings", "*"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T10:01:00Z",
            root,
            "invoice:approve",
            ("Invoice", "INV-1"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T11:00:00Z",
            Some(("admin", "admin", false, &[][..])),
            "revocation:create",
            ("Subject", "dave"),
            "allow",
            201,
        ),
        event(
            "2026-12-01T11:00:05Z",
            dave,
            "invoice:read",
            ("Invoice", "INV-1"),
            "allow",
            200,
        ),
        event(
            "2026-12-01T11:00:06Z",
            dave,
            "invoice:read",
            ("Invoice", "INV-1"),
            "deny",
            403,
        ),
        event(
            "2026-12-01T12:00:00Z",
            None,
            "invoice:read",
            ("Invoice", "INV-1"),
            "deny",
            429,
        ),
        // After the period.
        event(
            "2026-12-02T00:00:00Z",
            alice,
            "invoice:read",
            ("Invoice", "INV-1"),
            "allow",
            200,
        ),
    ];
    events[5]["outcome"]["export_rows"] = json!(600);
    events[6]["outcome"]["export_rows"] = json!(100);
    events[4]["decision"]["policies"] = json!(["sod.creator-never-approves"]);
    events[11]["break_glass_reason"] = json!("INC-7: approve the payroll run");
    events[11]["category"] = json!("break-glass");
    events[12]["decision"]["detail"] = json!("for good: left the company");
    events[12]["request"]["method"] = json!("POST");
    events[15]["decision"]["reason"] = json!("rate_limited");
    events[15]["decision"]["detail"] =
        json!("locked out after failed authentications; retry after 60s");
    events[15]["category"] = json!("authorization");
    events.insert(
        16,
        json!({"event_id": "s", "seq": 0, "stage": "complete", "time": "2026-12-01T13:00:00Z",
            "instance": "gw-1", "request_id": "s-1", "trace_id": null, "actor": null,
            "source": {"ip": "", "user_agent": null},
            "request": {"method": "", "path": "", "route": null, "protocol": ""},
            "action": "audit:sink_lagging", "resource": null, "break_glass_reason": null,
            "decision": {"effect": "allow", "reason": "system", "policies": [], "policy_version": "",
                "detail": "the sink `siem` has not delivered events written 61 s ago: 9 event(s) behind",
                "shadow": null},
            "outcome": {"status": 0, "upstream_status": null, "duration_ms": 0.0,
                "response_bytes": null, "error_side": null, "export_rows": null},
            "severity": "high", "category": "audit", "prev_hash": ""}),
    );
    events
}

fn setup(policy_dir: &Path) -> Setup {
    Setup {
        config_file: PathBuf::from("invoiceguard.toml"),
        policy_dir: policy_dir.to_owned(),
        issuers: vec!["https://idp.example".to_owned()],
        mfa_amr: vec!["mfa".to_owned()],
        failed_auth_per_ip: 20,
        failed_auth_per_subject: 5,
        failed_auth_window_s: 300,
        accounts: vec![
            Account {
                name: "erp-sync".to_owned(),
                kind: "api_key",
                scopes: vec!["invoices:read".to_owned()],
                credentials: vec!["0123456789ab".to_owned()],
            },
            Account {
                name: "old-bank-feed".to_owned(),
                kind: "client_certificate",
                scopes: vec![],
                credentials: vec!["bank.example".to_owned()],
            },
        ],
        sinks: vec![("siem".to_owned(), "syslog".to_owned())],
        ..Setup::default()
    }
}

/// The pack over trails, with the baseline policies and the test setup.
fn pack_of(trails: &[PathBuf], from: Option<&str>, to: Option<&str>) -> Pack {
    let (engine, policy_dir) = engine();
    let setup = setup(&policy_dir);
    build(&Inputs {
        setup: &setup,
        engine: &engine,
        trails,
        chain: &Chain::plain(),
        from: from.map(|f| f.parse().unwrap()),
        to: to.map(|t| t.parse().unwrap()),
        candidate: None,
    })
    .unwrap()
}

/// The pack over the known trail, for 2026-12-01.
fn known_pack(dir: &Dir) -> Pack {
    let trail = dir.0.join("trail.jsonl");
    write_trail(&trail, &mut known_events());
    pack_of(&[trail], Some("2026-12-01"), Some("2026-12-02"))
}

fn table<'p>(pack: &'p Pack, id: &str) -> &'p Table {
    pack.sections
        .iter()
        .flat_map(|s| &s.tables)
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("no table {id}"))
}

fn section<'p>(pack: &'p Pack, id: &str) -> &'p Section {
    pack.sections.iter().find(|s| s.id == id).unwrap()
}

fn rows(table: &Table) -> Vec<Vec<&str>> {
    table
        .rows
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect()
}

#[test]
fn the_period_holds_only_its_events() {
    let dir = Dir::new("period");
    let pack = known_pack(&dir);
    assert_eq!(pack.sources.lines_read, 18);
    assert_eq!(pack.sources.events, 16);
    assert_eq!(
        pack.period.first_event.as_deref(),
        Some("2026-12-01T08:00:00Z")
    );
    assert_eq!(
        pack.period.last_event.as_deref(),
        Some("2026-12-01T13:00:00Z")
    );
    let ids: Vec<&str> = pack.sections.iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        [
            "mfa",
            "sso",
            "rbac",
            "authentication",
            "sessions",
            "admins",
            "leavers",
            "logging",
            "exports",
            "integration",
            "encryption",
            "backup"
        ]
    );
}

#[test]
fn mfa_coverage_counts_each_persons_requests() {
    let dir = Dir::new("mfa");
    let pack = known_pack(&dir);
    assert_eq!(
        rows(table(&pack, "mfa_coverage")),
        [
            ["alice", "2", "2", "0", "100.0", "0"],
            ["carol", "2", "2", "0", "100.0", "0"],
            ["dave", "4", "0", "4", "0.0", "0"],
            ["root", "2", "2", "0", "100.0", "0"],
        ]
    );
    let without = rows(table(&pack, "logins_without_mfa"));
    assert_eq!(without.len(), 1);
    assert_eq!(without[0][0], "dave");
    assert_eq!(without[0][5], "4");
    let mfa = section(&pack, "mfa");
    assert!(mfa.attention);
    assert!(
        mfa.findings[0].starts_with("6 of 10 requests by people (60.0 %)"),
        "{}",
        mfa.findings[0]
    );
    assert_eq!(mfa.charts[0].series[0].values, [100.0, 100.0, 0.0, 100.0]);
}

#[test]
fn exports_lockouts_admins_and_break_glass_are_listed() {
    let dir = Dir::new("lists");
    let pack = known_pack(&dir);
    assert_eq!(
        rows(table(&pack, "exports_per_person")),
        [["carol", "2", "700", "1", "0"]]
    );
    let exports = rows(table(&pack, "exports"));
    assert_eq!(exports.len(), 2);
    assert_eq!((exports[0][3], exports[0][4]), ("600", "yes"));
    assert_eq!((exports[1][3], exports[1][4]), ("100", "no"));
    assert_eq!(
        rows(table(&pack, "lockouts")),
        [[
            "address",
            "10.0.0.7",
            "2026-12-01T12:00:00Z",
            "2026-12-01T12:00:00Z",
            "1"
        ]]
    );
    assert_eq!(
        rows(table(&pack, "admin_list")),
        [[
            "root",
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:01:00Z",
            "2",
            "yes"
        ]]
    );
    let administration = rows(table(&pack, "administration"));
    assert_eq!(administration.len(), 2, "{administration:?}");
    assert_eq!(administration[0][2], "settings:update");
    assert_eq!(administration[1][2], "revocation:create");
    let glass = rows(table(&pack, "break_glass"));
    assert_eq!(glass.len(), 1);
    assert_eq!(glass[0][2], "INC-7: approve the payroll run");
    assert_eq!(rows(table(&pack, "sod_denials")).len(), 1);
    let trail = rows(table(&pack, "trail_events"));
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0][2], "audit:sink_lagging");
    assert!(section(&pack, "logging").findings[0].contains("1 time(s) a sink lagged"));
    assert_eq!(
        rows(table(&pack, "policy_versions")),
        [["v1", "2026-12-01T08:00:00Z", "2026-12-01T12:00:00Z", "15"]]
    );
}

#[test]
fn a_leaver_allowed_after_the_revocation_is_shown() {
    let dir = Dir::new("leaver");
    let pack = known_pack(&dir);
    assert_eq!(
        rows(table(&pack, "revocations")),
        [[
            "dave",
            "2026-12-01T11:00:00Z",
            "admin",
            "for good: left the company",
            "2026-12-01T08:02:00Z",
            "1",
            "2026-12-01T11:00:05Z",
            "1",
            "",
        ]]
    );
    let leavers = section(&pack, "leavers");
    assert!(leavers.attention);
    assert!(leavers.findings[0].contains("1 request(s) allowed after"));
}

#[test]
fn integration_accounts_show_use_errors_and_what_their_scopes_allow() {
    let dir = Dir::new("integration");
    let pack = known_pack(&dir);
    let accounts = rows(table(&pack, "integration_accounts"));
    assert_eq!(accounts.len(), 2);
    let erp = &accounts[0];
    assert_eq!(
        &erp[..4],
        ["erp-sync", "api_key", "0123456789ab", "invoices:read"]
    );
    assert!(erp[4].contains("invoice:read"), "{}", erp[4]);
    assert!(!erp[4].contains("partner:update"), "{}", erp[4]);
    assert_eq!(&erp[5..9], ["3", "1", "1", "33.3"]);
    let bank = &accounts[1];
    assert_eq!(
        &bank[..3],
        ["old-bank-feed", "client_certificate", "bank.example"]
    );
    assert_eq!(bank[5], "0");
    assert!(section(&pack, "integration").findings[0].contains("1 not used"));
}

#[test]
fn the_role_matrix_is_what_the_policies_decide() {
    let (engine, _) = engine();
    let (matrix, roles) = crate::matrix::roles(&engine);
    for role in ["accountant", "admin", "approver", "auditor", "invoicing"] {
        assert!(roles.iter().any(|r| r == role), "{roles:?}");
    }
    let cell = |action: &str, role: &str| -> String {
        let column = matrix.columns.iter().position(|c| c == role).unwrap();
        let row = matrix.rows.iter().find(|r| r[2] == action).unwrap();
        row[column].clone()
    };
    // The baseline demands MFA of every person: nothing is allowed without it.
    assert!(matrix.rows.iter().flatten().all(|c| c != "allow"));
    assert_eq!(cell("invoice:create", "invoicing"), "allow with MFA");
    assert_eq!(cell("invoice:approve", "invoicing"), "deny");
    assert_ne!(cell("invoice:approve", "approver"), "deny");
    // An admin never approves (the baseline's prohibition), whatever else it holds.
    assert_eq!(cell("invoice:approve", "admin"), "deny");
    assert_eq!(cell("settings:update", "admin"), "allow with MFA");
    assert_eq!(cell("settings:update", "approver"), "deny");
    assert_eq!(cell("report:read", "auditor"), "allow with MFA");
    // Break-glass administers only with a stated reason, and never approves.
    assert_eq!(cell("settings:update", "break-glass"), "break-glass reason");
    assert_eq!(cell("invoice:approve", "break-glass"), "deny");
}

#[test]
fn decision_cases_run_and_pass() {
    let dir = Dir::new("cases");
    let pack = known_pack(&dir);
    let cases = rows(table(&pack, "decision_cases"));
    assert!(cases.len() > 20, "{}", cases.len());
    assert!(cases.iter().all(|c| c[2] == "passed"), "{cases:?}");
    assert!(cases.iter().any(|c| c[0] == "sod.toml"));
}

#[test]
fn the_chain_is_verified_and_a_changed_event_found() {
    let dir = Dir::new("chain");
    let trail = dir.0.join("trail.jsonl");
    write_trail(&trail, &mut known_events());
    let (engine, policy_dir) = engine();
    let setup = setup(&policy_dir);
    let inputs = Inputs {
        setup: &setup,
        engine: &engine,
        trails: std::slice::from_ref(&trail),
        chain: &Chain::plain(),
        from: None,
        to: None,
        candidate: None,
    };
    let pack = build(&inputs).unwrap();
    let chain = rows(table(&pack, "chain_verification"));
    assert_eq!(&chain[0][1..5], ["18", "1", "18", "yes"]);
    assert!(!section(&pack, "logging").attention);
    // Someone lowers an export's rows.
    let text = std::fs::read_to_string(&trail)
        .unwrap()
        .replace("\"export_rows\":600", "\"export_rows\":60");
    std::fs::write(&trail, text).unwrap();
    let pack = build(&inputs).unwrap();
    let chain = rows(table(&pack, "chain_verification"));
    assert_eq!(chain[0][4], "NO");
    assert!(
        chain[0][6].contains("seq 6 was modified"),
        "{}",
        chain[0][6]
    );
    assert!(section(&pack, "logging").attention);
}

#[test]
fn a_spools_undelivered_events_are_counted() {
    let dir = Dir::new("delivery");
    let spool = dir.0.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    write_trail(&spool.join(format!("{:020}.jsonl", 1)), &mut known_events());
    let segment = std::fs::read_to_string(spool.join(format!("{:020}.jsonl", 1))).unwrap();
    // The sink has taken the first 10 lines.
    let offset: usize = segment.split_inclusive('\n').take(10).map(str::len).sum();
    std::fs::write(spool.join("siem.cursor"), format!("1 {offset}")).unwrap();
    let pack = pack_of(&[spool], None, None);
    let delivery = rows(table(&pack, "delivery"));
    assert_eq!(delivery.len(), 1);
    assert_eq!(&delivery[0][1..], ["siem", "syslog", "8"]);
}

#[test]
fn html_and_csv_keep_hostile_text_inert() {
    let dir = Dir::new("escape");
    let trail = dir.0.join("trail.jsonl");
    let mut events = known_events();
    events[1]["actor"]["id"] = json!("<script>alert(1)</script>");
    events[11]["break_glass_reason"] = json!("=HYPERLINK(\"http://x\"),\"quoted\"");
    write_trail(&trail, &mut events);
    let pack = pack_of(&[trail], None, None);
    let out = dir.0.join("out");
    let written = write(&pack, &out).unwrap();
    assert!(written.len() > 20);
    let html = std::fs::read_to_string(out.join("evidence.html")).unwrap();
    assert!(!html.contains("<script"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let csv = std::fs::read_to_string(out.join("csv/break_glass.csv")).unwrap();
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://x\"\"),\"\"quoted\"\"\""),
        "{csv}"
    );
    // Every prefix a spreadsheet runs is defused; plain numbers are left as they are.
    let mut table = Table::new("t", "t", &["cell"]);
    for cell in [
        "+1+cmd", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "-5", "+7", "1e3",
    ] {
        table.row(vec![cell.to_owned()]);
    }
    let text = table.to_csv();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[1..4], ["'+1+cmd", "'-2+3", "'@SUM(A1)"]);
    assert_eq!(lines[4], "'\t=1");
    assert!(lines[5].starts_with("\"'\r=1"), "{text:?}");
    assert_eq!(lines[lines.len() - 4..], ["-5", "+7", "1e3", ""]);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("evidence.json")).unwrap()).unwrap();
    assert_eq!(json["sections"].as_array().unwrap().len(), 12);
}

#[test]
fn the_session_section_shows_the_settings_and_each_sessions_life_cycle() {
    let dir = Dir::new("sessions");
    let invoicing: &[&str] = &["invoicing"];
    let alice = Some(("alice", "user", true, invoicing));
    let browser = |mut event: Value, reason: &str, detail: Option<&str>| {
        event["actor"]["auth_method"] = json!("session");
        event["source"]["session"] = json!("ab".repeat(32));
        event["decision"]["reason"] = json!(reason);
        event["decision"]["detail"] = json!(detail);
        event
    };
    let mut events = vec![
        browser(
            event(
                "2026-12-01T08:00:00Z",
                alice,
                "session:login",
                ("Session", "*"),
                "allow",
                200,
            ),
            "session",
            Some("session started on Chrome on Linux from 10.0.0.0/24"),
        ),
        browser(
            event(
                "2026-12-01T08:05:00Z",
                None,
                "invoice:list",
                ("Invoice", "*"),
                "deny",
                302,
            ),
            "unauthenticated",
            Some("sent to log in: session expired (idle timeout)"),
        ),
        browser(
            event(
                "2026-12-01T08:06:00Z",
                alice,
                "invoice:approve",
                ("Invoice", "INV-1"),
                "deny",
                302,
            ),
            "step_up",
            Some("sent to log in: a login within 900s required"),
        ),
        browser(
            event(
                "2026-12-01T08:07:00Z",
                alice,
                "invoice:create",
                ("Invoice", "*"),
                "deny",
                403,
            ),
            "cross_site",
            Some("a state-changing request from another origin"),
        ),
        browser(
            event(
                "2026-12-01T08:08:00Z",
                alice,
                "invoice:list",
                ("Invoice", "*"),
                "allow",
                200,
            ),
            "policy",
            Some(
                "session used from another device: started on Chrome on Linux from 10.0.0.0/24, now curl on other from 192.0.2.0/24",
            ),
        ),
        browser(
            event(
                "2026-12-01T08:09:00Z",
                alice,
                "session:logout",
                ("Session", "*"),
                "allow",
                303,
            ),
            "session",
            Some("session ended; sent to the IdP's end-session endpoint"),
        ),
    ];
    events[1]["actor"] = Value::Null;
    let trail = dir.0.join("trail.jsonl");
    write_trail(&trail, &mut events);
    let (engine, policy_dir) = engine();
    let mut with_sessions = setup(&policy_dir);
    with_sessions.session = Some(SessionSetup {
        external_url: "https://invoices.example.com".to_owned(),
        cookie: "__Host-invoiceguard-session=<random id>; Path=/; Secure; HttpOnly; SameSite=Lax"
            .to_owned(),
        idle_timeout_s: 3600,
        absolute_timeout_s: 28_800,
        on_device_change: "audited (severity high)".to_owned(),
        cors_origins: Vec::new(),
    });
    let pack = build(&Inputs {
        setup: &with_sessions,
        engine: &engine,
        trails: &[trail],
        chain: &Chain::plain(),
        from: None,
        to: None,
        candidate: None,
    })
    .unwrap();
    let settings = rows(table(&pack, "session_settings"));
    assert!(
        settings.contains(&vec!["inactivity (idle) timeout", "1 h"]),
        "{settings:?}"
    );
    assert!(
        settings.contains(&vec!["absolute timeout", "8 h"]),
        "{settings:?}"
    );
    let life = rows(table(&pack, "session_life_cycle"));
    let count = |name: &str| life.iter().find(|r| r[0] == name).map(|r| r[1]).unwrap();
    assert_eq!(count("logins"), "1");
    assert_eq!(count("… with MFA"), "1");
    assert_eq!(count("logouts by the person"), "1");
    assert_eq!(count("ended by the inactivity timeout"), "1");
    assert_eq!(count("ended by the absolute timeout"), "0");
    assert_eq!(
        count("sent to log in again for a sensitive operation (step-up)"),
        "1"
    );
    let incidents = rows(table(&pack, "session_incidents"));
    assert_eq!(incidents.len(), 2);
    assert_eq!(incidents[0][2], "cross-site request refused");
    assert_eq!(incidents[1][2], "device changed");
    let s = section(&pack, "sessions");
    assert!(s.attention);
    assert!(
        s.findings
            .iter()
            .any(|f| f.contains("longer than the 30 minutes")),
        "{:?}",
        s.findings
    );
    // Without [session], the section says so.
    let without = known_pack(&dir);
    assert!(
        section(&without, "sessions").findings[0]
            .starts_with("Browser sessions are not configured")
    );
}

#[test]
fn the_leavers_section_shows_the_idps_events_grants_and_role_changes() {
    let dir = Dir::new("lifecycle");
    let admin: &[&str] = &["admin"];
    let invoicing: &[&str] = &["invoicing"];
    let lifecycle = |mut event: Value, record: Value| {
        event["category"] = json!("lifecycle");
        event["lifecycle"] = record;
        event
    };
    let mut events = vec![
        event(
            "2026-12-01T08:00:00Z",
            Some(("alice", "user", true, invoicing)),
            "invoice:read",
            ("Invoice", "INV-1"),
            "allow",
            200,
        ),
        lifecycle(
            event(
                "2026-12-01T09:00:00Z",
                None,
                "ssf:account-disabled",
                ("Subject", "alice"),
                "allow",
                202,
            ),
            json!({"subject": "alice", "source": "ssf", "transmitter": "https://idp",
                "event_type": "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
                "reason": "left the company", "acted": ["revoked", "sessions_ended:1"]}),
        ),
        event(
            "2026-12-01T09:00:01Z",
            Some(("alice", "user", true, invoicing)),
            "invoice:read",
            ("Invoice", "INV-1"),
            "deny",
            401,
        ),
        lifecycle(
            event(
                "2026-12-01T10:00:00Z",
                Some(("dave", "user", true, admin)),
                "grant:create",
                ("Subject", "bob"),
                "allow",
                201,
            ),
            json!({"subject": "bob", "source": "grant", "role": "approver", "until_unix": 1_796_000_000_u64,
                "ticket": "FIN-123", "reason": "cover", "acted": ["granted"]}),
        ),
        lifecycle(
            event(
                "2026-12-01T10:01:00Z",
                Some(("dave", "user", true, admin)),
                "grant:create",
                ("Subject", "dave"),
                "deny",
                403,
            ),
            json!({"subject": "dave", "source": "grant", "role": "auditor", "ticket": "FIN-124",
                "reason": "self", "acted": ["refused"]}),
        ),
        lifecycle(
            event(
                "2026-12-01T11:00:00Z",
                Some(("erin", "user", true, invoicing)),
                "identity:roles_changed",
                ("Subject", "erin"),
                "allow",
                0,
            ),
            json!({"subject": "erin", "source": "roles_changed", "roles_before": ["auditor"],
                "roles_after": ["auditor", "invoicing"], "acted": ["recorded"]}),
        ),
    ];
    let trail = dir.0.join("trail.jsonl");
    write_trail(&trail, &mut events);
    let pack = pack_of(&[trail], None, None);
    let revocations = rows(table(&pack, "revocations"));
    assert_eq!(revocations[0][0], "alice");
    assert_eq!(revocations[0][2], "the IdP (https://idp)");
    assert_eq!(revocations[0][3], "ssf:account-disabled: left the company");
    assert_eq!(revocations[0][5], "0", "nothing allowed after");
    assert_eq!(revocations[0][7], "1", "one refusal after");
    assert_eq!(
        rows(table(&pack, "security_events")),
        [[
            "2026-12-01T09:00:00Z",
            "ssf:account-disabled",
            "alice",
            "revoked, sessions_ended:1"
        ]]
    );
    let grants = rows(table(&pack, "grants"));
    assert_eq!(grants.len(), 2);
    assert_eq!(grants[0][6], "FIN-123");
    assert_eq!(grants[1][8], "deny");
    assert_eq!(
        rows(table(&pack, "role_changes")),
        [[
            "2026-12-01T11:00:00Z",
            "erin",
            "auditor",
            "auditor invoicing"
        ]]
    );
    let leavers = section(&pack, "leavers");
    assert!(leavers.attention, "a refused grant asks for attention");
    assert!(
        leavers.findings[1].contains("1 grant(s) given, 1 refused"),
        "{:?}",
        leavers.findings
    );
}
