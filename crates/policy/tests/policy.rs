//! The baseline in `policies/` as golden data: every baseline policy decides at least one case
//! here, and a broken policy folder is reported with files and positions.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test at the first broken step"
)]

use std::path::{Path, PathBuf};

use invoiceguard_authn::{AuthMethod, Principal, PrincipalKind};
use invoiceguard_policy::{
    Effect, ExportFacts, LoadError, PolicyConfig, PolicyEngine, RequestFacts, ResourceFacts, StepUp,
};

/// The clock of every decision here.
const NOW: u64 = 1_800_000_000;

fn baseline_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn baseline() -> PolicyEngine {
    PolicyEngine::load(&PolicyConfig {
        dir: baseline_dir(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("baseline does not load: {:#?}", e.0))
}

fn user(id: &str, roles: &[&str], mfa: bool) -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: id.to_owned(),
        client_id: Some("web".to_owned()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        scopes: vec![],
        amr: vec![],
        acr: None,
        auth_time: Some(NOW - 60),
        mfa,
        method: AuthMethod::Jwt,
        issued_at: None,
        email: None,
    }
}

fn service(id: &str, scopes: &[&str]) -> Principal {
    Principal {
        kind: PrincipalKind::ServiceAccount,
        id: id.to_owned(),
        client_id: Some(id.to_owned()),
        roles: vec![],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        amr: vec![],
        acr: None,
        auth_time: None,
        mfa: false,
        method: AuthMethod::Jwt,
        issued_at: None,
        email: None,
    }
}

/// Decides `METHOD /path` for `who`; returns the effect and the deciding policy ids.
fn decide(
    engine: &PolicyEngine,
    who: &Principal,
    method: &str,
    path: &str,
) -> (Effect, Vec<String>) {
    let decision = decision(engine, who, method, path);
    (decision.effect, decision.policies)
}

/// The whole decision for `METHOD /path`.
fn decision(
    engine: &PolicyEngine,
    who: &Principal,
    method: &str,
    path: &str,
) -> invoiceguard_policy::Decision {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let route = engine
        .routes()
        .find(method, &segments)
        .unwrap_or_else(|| panic!("no route for {method} {path}"));
    let facts = RequestFacts {
        source_ip: "192.0.2.10".parse().unwrap(),
        now_unix: NOW,
        resource: ResourceFacts::default(),
        export: ExportFacts::default(),
        break_glass_reason: None,
        user_scopes_enforced: false,
    };
    let decision = engine.authorize(who, &route, &facts);
    assert!(decision.errors.is_empty(), "{:?}", decision.errors);
    decision
}

fn allowed(engine: &PolicyEngine, who: &Principal, method: &str, path: &str, by: &str) {
    let (effect, policies) = decide(engine, who, method, path);
    assert_eq!(effect, Effect::Allow, "{} {method} {path}", who.id);
    assert_eq!(policies, [by], "{} {method} {path}", who.id);
}

fn denied(engine: &PolicyEngine, who: &Principal, method: &str, path: &str, by: &[&str]) {
    let (effect, policies) = decide(engine, who, method, path);
    assert_eq!(effect, Effect::Deny, "{} {method} {path}", who.id);
    assert_eq!(policies, by, "{} {method} {path}", who.id);
}

#[test]
fn invoicing_issues_but_never_administers() {
    let e = baseline();
    let alice = user("alice", &["invoicing"], true);
    allowed(&e, &alice, "POST", "/invoices", "role.invoicing");
    allowed(&e, &alice, "GET", "/invoices/INV-1", "role.invoicing");
    allowed(
        &e,
        &alice,
        "POST",
        "/invoices/INV-1/submit",
        "role.invoicing",
    );
    allowed(&e, &alice, "GET", "/partners", "role.invoicing");
    denied(
        &e,
        &alice,
        "PUT",
        "/settings",
        &["rbac.invoicing-no-administration"],
    );
    denied(
        &e,
        &alice,
        "PUT",
        "/users/bob/roles",
        &["rbac.invoicing-no-administration"],
    );
    denied(&e, &alice, "POST", "/invoices/INV-1/approve", &[]);
    denied(&e, &alice, "POST", "/exports", &[]);
}

#[test]
fn approver_approves_only() {
    let e = baseline();
    let bob = user("bob", &["approver"], true);
    allowed(&e, &bob, "POST", "/invoices/INV-1/approve", "role.approver");
    allowed(&e, &bob, "POST", "/invoices/INV-1/reject", "role.approver");
    denied(&e, &bob, "POST", "/invoices", &[]);
    denied(&e, &bob, "PUT", "/partners/P-1/bank-account", &[]);
}

#[test]
fn accountant_exports_but_is_not_admin() {
    let e = baseline();
    let carol = user("carol", &["accountant"], true);
    allowed(&e, &carol, "POST", "/exports", "role.accountant");
    allowed(&e, &carol, "GET", "/reports/summary", "role.accountant");
    allowed(
        &e,
        &carol,
        "PUT",
        "/partners/P-1/bank-account",
        "role.accountant",
    );
    denied(
        &e,
        &carol,
        "PUT",
        "/settings",
        &["sod.accountant-not-admin"],
    );
    // Both roles held at once: the prohibition still wins over the admin permit.
    let both = user("carol", &["accountant", "admin"], true);
    denied(&e, &both, "PUT", "/settings", &["sod.accountant-not-admin"]);
}

#[test]
fn admin_configures_but_never_approves() {
    let e = baseline();
    let dave = user("dave", &["admin"], true);
    allowed(&e, &dave, "PUT", "/settings", "role.admin");
    allowed(&e, &dave, "PUT", "/users/alice/roles", "role.admin");
    denied(&e, &dave, "GET", "/invoices", &[]);
    let admin_approver = user("dave", &["admin", "approver"], true);
    denied(
        &e,
        &admin_approver,
        "POST",
        "/invoices/INV-1/approve",
        &["sod.admin-never-approves"],
    );
    denied(
        &e,
        &admin_approver,
        "POST",
        "/invoices/INV-1/reject",
        &["sod.admin-never-approves"],
    );
}

#[test]
fn auditor_reads_only() {
    let e = baseline();
    let erin = user("erin", &["auditor"], true);
    allowed(&e, &erin, "GET", "/audit-log", "role.auditor");
    allowed(&e, &erin, "GET", "/invoices", "role.auditor");
    denied(&e, &erin, "POST", "/exports", &["rbac.auditor-read-only"]);
    denied(
        &e,
        &erin,
        "PATCH",
        "/invoices/INV-1",
        &["rbac.auditor-read-only"],
    );
    let auditor_accountant = user("erin", &["auditor", "accountant"], true);
    denied(
        &e,
        &auditor_accountant,
        "POST",
        "/exports",
        &["rbac.auditor-read-only"],
    );
}

#[test]
fn every_interactive_user_needs_mfa() {
    let e = baseline();
    let alice = user("alice", &["invoicing"], false);
    denied(&e, &alice, "GET", "/invoices", &["mfa.required-for-users"]);
    denied(
        &e,
        &alice,
        "PUT",
        "/settings",
        &["mfa.required-for-users", "rbac.invoicing-no-administration"],
    );
}

#[test]
fn a_missing_or_stale_login_asks_for_step_up() {
    let e = baseline();
    let no_mfa = decision(
        &e,
        &user("alice", &["invoicing"], false),
        "GET",
        "/invoices",
    );
    assert_eq!(
        no_mfa.step_up,
        Some(StepUp {
            mfa: true,
            max_age_s: None
        })
    );

    let mut bob = user("bob", &["approver"], true);
    bob.auth_time = Some(NOW - 3600);
    let stale = decision(&e, &bob, "POST", "/invoices/INV-1/approve");
    assert_eq!(stale.policies, ["mfa.fresh-login-for-sensitive-actions"]);
    assert_eq!(
        stale.step_up,
        Some(StepUp {
            mfa: false,
            max_age_s: Some(900)
        })
    );
    allowed(&e, &bob, "GET", "/invoices", "role.approver");
    bob.auth_time = None;
    assert_eq!(
        decision(&e, &bob, "POST", "/invoices/INV-1/approve").step_up,
        Some(StepUp {
            mfa: false,
            max_age_s: Some(900)
        })
    );
    bob.auth_time = Some(NOW - 60);
    allowed(&e, &bob, "POST", "/invoices/INV-1/approve", "role.approver");

    let mut both = user("bob", &["approver"], false);
    both.auth_time = Some(NOW - 3600);
    let demand = decision(&e, &both, "POST", "/invoices/INV-1/approve").step_up;
    assert_eq!(
        demand,
        Some(StepUp {
            mfa: true,
            max_age_s: Some(900)
        }),
        "the demands combine"
    );

    // Logging in again would not help: a plain refusal, no step-up.
    let alice = user("alice", &["invoicing"], true);
    assert_eq!(decision(&e, &alice, "PUT", "/settings").step_up, None);
    let mut stale_alice = alice.clone();
    stale_alice.mfa = false;
    stale_alice.auth_time = Some(NOW - 3600);
    let mixed = decision(&e, &stale_alice, "PUT", "/settings");
    assert!(
        mixed
            .policies
            .contains(&"rbac.invoicing-no-administration".to_owned())
    );
    assert_eq!(
        mixed.step_up, None,
        "a forbid without step-up among the deciders means no step-up"
    );
    assert_eq!(
        decision(&e, &alice, "POST", "/exports").step_up,
        None,
        "default deny has no step-up"
    );
}

#[test]
fn integration_accounts_keep_to_their_scopes() {
    let e = baseline();
    let erp = service(
        "erp-sync",
        &["invoices:read", "invoices:write", "partners:read"],
    );
    allowed(&e, &erp, "GET", "/invoices", "integration.invoices-read");
    allowed(&e, &erp, "POST", "/invoices", "integration.invoices-write");
    allowed(
        &e,
        &erp,
        "GET",
        "/partners/P-1",
        "integration.partners-read",
    );
    denied(&e, &erp, "POST", "/exports", &[]);
    denied(
        &e,
        &erp,
        "POST",
        "/invoices/INV-1/approve",
        &["integration.no-interactive-actions"],
    );
    denied(
        &e,
        &erp,
        "GET",
        "/audit-log",
        &["integration.no-interactive-actions"],
    );
    let reader = service("reporting", &["invoices:read"]);
    denied(&e, &reader, "POST", "/invoices", &[]);
    let exporter = service("dwh", &["exports:create"]);
    allowed(&e, &exporter, "POST", "/exports", "integration.exports");
}

#[test]
fn unknown_roles_grant_nothing() {
    let e = baseline();
    denied(
        &e,
        &user("mallory", &["superuser"], true),
        "GET",
        "/invoices",
        &[],
    );
    denied(&e, &user("mallory", &[], true), "GET", "/invoices", &[]);
}

#[test]
fn version_is_a_stable_content_hash() {
    let a = baseline();
    let b = baseline();
    assert_eq!(a.version(), b.version());
    assert_eq!(a.version().len(), 12);
    assert!(a.policy_count() >= 12);
}

/// Copies the baseline into a fresh folder, with `edit` applied to one file.
fn broken_copy(name: &str, file: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("invoiceguard-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(baseline_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let mut text = std::fs::read_to_string(&path).unwrap();
            if path.file_name().unwrap() == file {
                text = edit(text);
            }
            std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
        }
    }
    dir
}

fn problems(dir: PathBuf) -> Vec<String> {
    let result = PolicyEngine::load(&PolicyConfig {
        dir: dir.clone(),
        ..Default::default()
    });
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(_) => panic!("a broken folder loaded"),
        Err(LoadError(problems)) => problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn syntax_error_is_reported_with_file_line_and_column() {
    let dir = broken_copy("syntax", "roles.cedar", |t| {
        t.replacen("permit (", "permit (\n  principal ==,", 1)
    });
    let found = problems(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("roles.cedar:7:15: unexpected token `,`"),
        "{found:?}"
    );
}

#[test]
fn policy_that_does_not_fit_the_schema_is_refused() {
    let dir = broken_copy("schema", "integration.cedar", |t| {
        t.replacen("principal.scopes.contains", "principal.scope.contains", 1)
    });
    let found = problems(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("integration.cedar:10:"), "{found:?}");
    assert!(found[0].contains("scope"), "{found:?}");
}

#[test]
fn route_naming_an_unknown_action_or_wrong_type_is_refused() {
    let routes = std::fs::read_to_string(baseline_dir().join("routes.toml")).unwrap();
    let line = routes
        .lines()
        .position(|l| l.contains("action = \"invoice:list\""))
        .unwrap()
        + 1;
    let dir = broken_copy("routes", "routes.toml", |t| {
        t.replacen("action = \"invoice:list\"", "action = \"invoice:lsit\"", 1)
            .replacen(
                "resource = { type = \"Partner\" }",
                "resource = { type = \"Invoice\" }",
                1,
            )
    });
    let found = problems(dir);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains(&format!("routes.toml:{line}:")) && found[0].contains("invoice:lsit"),
        "{found:?}"
    );
    assert!(
        found[1].contains("does not apply to resource type `Invoice`"),
        "{found:?}"
    );
}

#[test]
fn step_up_annotations_are_checked() {
    let dir = broken_copy("stepup", "prohibitions.cedar", |t| {
        t.replacen("@step_up(\"mfa\")", "@step_up(\"otp\")", 1)
            .replacen("@step_up_max_age(\"900\")", "@step_up_max_age(\"15m\")", 1)
    });
    let found = problems(dir);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("prohibitions.cedar:28:1: ")
            && found[0].contains("`@step_up(\"otp\")` is not understood"),
        "the annotation's line: {found:?}"
    );
    assert!(
        found[1].contains("prohibitions.cedar:35:1: ")
            && found[1].contains("must be a number of seconds"),
        "{found:?}"
    );
}

#[test]
fn missing_and_duplicate_ids_are_refused() {
    let dir = broken_copy("ids", "prohibitions.cedar", |t| {
        t.replacen("@id(\"sod.accountant-not-admin\")", "", 1)
            .replacen(
                "@id(\"sod.admin-never-approves\")",
                "@id(\"role.admin\")",
                1,
            )
    });
    let found = problems(dir);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|p| p.contains("policy number 2 has no `@id")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("roles.cedar:42:1: ") && p.contains("`role.admin` is also used")),
        "the duplicate's line: {found:?}"
    );
}

/// The security team's decision cases in `policies/tests/`, as `invoiceguard policy test` runs
/// them.
#[test]
fn the_decision_cases_in_policies_tests_pass() {
    let outcomes = invoiceguard_policy::run_cases(&baseline(), &baseline_dir().join("tests"));
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.name)))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(outcomes.len() >= 40, "{} cases", outcomes.len());
}
