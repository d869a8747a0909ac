//! Decision cases: the security team's tests for its policies, in `tests/*.toml` beside them.
//! Each case is a hypothetical request and the decision it must get, with the deciding policies.
//!
//! ```toml
//! [[case]]
//! name = "the creator of an invoice never approves it"
//! principal = { user = "grace", roles = ["invoicing", "approver"] }  # or { service_account = "erp", scopes = [...] }
//!                                 # a user's `scopes` are its token's: given, the token is held
//!                                 # to them (scopes.cedar); left out, they are not in question
//! mfa = true                      # default true
//! auth_age_s = 60                 # seconds since the login, default 60
//! request = "POST /invoices/INV-1/approve"   # or "ACTION on TYPE ID" for an act without a route,
//!                                 # e.g. "export:approve_request on ExportRequest AR-1"
//! resource = { creator = "grace", amount = 900 }   # facts, optional; a role grant's are
//!                                 # { grantee = "dave", role = "approver", roles_after = [...] }
//! export = { rows = 100, within_limits = true, approved = false }   # optional
//! break_glass_reason = "INC-42: restore settings"  # optional
//! expect = "deny"                 # allow, deny, step_up or approval_required
//! policies = ["sod.creator-never-approves"]
//! ```

use std::path::{Path, PathBuf};

use invoiceguard_authn::{AuthMethod, Principal, PrincipalKind};
use serde::Deserialize;

use crate::decision::Effect;
use crate::engine::PolicyEngine;
use crate::request::{ExportFacts, RequestFacts, ResourceFacts};

/// The clock of every case.
const NOW: u64 = 1_800_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: CasePrincipal,
    #[serde(default = "yes")]
    mfa: bool,
    #[serde(default = "minute")]
    auth_age_s: u64,
    request: String,
    #[serde(default)]
    resource: CaseResource,
    export: Option<CaseExport>,
    break_glass_reason: Option<String>,
    expect: Expect,
    #[serde(default)]
    policies: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePrincipal {
    user: Option<String>,
    service_account: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    scopes: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CaseResource {
    creator: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    status: Option<String>,
    company: Option<String>,
    /// A role grant's grantee, role, and the grantee's roles with it.
    grantee: Option<String>,
    role: Option<String>,
    #[serde(default)]
    roles_after: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseExport {
    rows: u64,
    #[serde(default = "yes")]
    within_limits: bool,
    #[serde(default)]
    approved: bool,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Allow,
    Deny,
    StepUp,
    ApprovalRequired,
}

fn yes() -> bool {
    true
}

fn minute() -> u64 {
    60
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The file and the case's name.
    pub name: String,
    /// `None` when the case passed; what differed otherwise.
    pub failure: Option<String>,
}

/// Runs every case in the `*.toml` files of `dir` against `engine`. A file that cannot be read
/// or parsed is one failed outcome.
pub fn run_cases(engine: &PolicyEngine, dir: &Path) -> Vec<CaseOutcome> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    let mut outcomes = Vec::new();
    for file in files {
        let label = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed: Result<CasesFile, String> = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| toml::from_str(&text).map_err(|e| e.to_string()));
        match parsed {
            Err(error) => outcomes.push(CaseOutcome {
                name: label,
                failure: Some(error),
            }),
            Ok(cases) => {
                for case in cases.case {
                    let failure = run(engine, &case).err();
                    outcomes.push(CaseOutcome {
                        name: format!("{label}: {}", case.name),
                        failure,
                    });
                }
            }
        }
    }
    outcomes
}

/// A hypothetical request, for `invoiceguard policy explain`.
#[derive(Debug, Clone, Default)]
pub struct Hypothetical {
    /// A user's id (or set `service_account`).
    pub user: Option<String>,
    /// An integration account's id.
    pub service_account: Option<String>,
    /// The user's Cedar roles.
    pub roles: Vec<String>,
    /// The account's scopes.
    pub scopes: Vec<String>,
    /// Whether the login was multi-factor.
    pub mfa: bool,
    /// Seconds since the login.
    pub auth_age_s: u64,
    /// `METHOD /path`.
    pub request: String,
    /// The invoice's creator.
    pub creator: Option<String>,
    /// The invoice's amount.
    pub amount: Option<i64>,
    /// Rows an export asks for.
    pub export_rows: Option<u64>,
    /// Whether the export quota holds them.
    pub export_within_limits: bool,
    /// A stated break-glass reason.
    pub break_glass_reason: Option<String>,
}

/// What the policies decide for a hypothetical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `allow`, `deny`, or `step_up` (denied; a stronger or fresher login would lift it).
    pub effect: &'static str,
    /// The deciding policies' `@id`s.
    pub policies: Vec<String>,
    /// Cedar's evaluation errors, if any.
    pub errors: Vec<String>,
    /// `METHOD template -> action`.
    pub route: String,
    /// `Type::"id"`.
    pub resource: String,
}

/// Decides a hypothetical request.
pub fn decide_hypothetical(
    engine: &PolicyEngine,
    hypothetical: &Hypothetical,
) -> Result<Verdict, String> {
    let case = Case {
        name: String::new(),
        principal: CasePrincipal {
            user: hypothetical.user.clone(),
            service_account: hypothetical.service_account.clone(),
            roles: hypothetical.roles.clone(),
            // A user's scopes are in question only when some are named.
            scopes: Some(hypothetical.scopes.clone())
                .filter(|scopes| !scopes.is_empty() || hypothetical.service_account.is_some()),
        },
        mfa: hypothetical.mfa,
        auth_age_s: hypothetical.auth_age_s,
        request: hypothetical.request.clone(),
        resource: CaseResource {
            creator: hypothetical.creator.clone(),
            amount: hypothetical.amount,
            ..Default::default()
        },
        export: hypothetical.export_rows.map(|rows| CaseExport {
            rows,
            within_limits: hypothetical.export_within_limits,
            approved: false,
        }),
        break_glass_reason: hypothetical.break_glass_reason.clone(),
        expect: Expect::Allow,
        policies: Vec::new(),
    };
    let Decided {
        decision,
        got,
        route,
        resource,
    } = decide(engine, &case)?;
    Ok(Verdict {
        effect: match got {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::StepUp => "step_up",
            Expect::ApprovalRequired => "approval_required",
        },
        policies: decision.policies,
        errors: decision.errors,
        route,
        resource,
    })
}

/// What the policies decide for a hypothetical request, in words.
pub fn explain(engine: &PolicyEngine, hypothetical: &Hypothetical) -> Result<String, String> {
    let verdict = decide_hypothetical(engine, hypothetical)?;
    let words = match verdict.effect {
        "allow" => "allow",
        "deny" => "deny",
        "approval_required" => {
            "deny, until another person approves this export (four eyes: 403 approval-required)"
        }
        _ => "deny, with a step-up challenge (a stronger or fresher login would lift it)",
    };
    let by = if verdict.policies.is_empty() {
        if verdict.effect == "allow" {
            "-".to_owned()
        } else {
            "no permit applies (default deny)".to_owned()
        }
    } else {
        verdict.policies.join(", ")
    };
    let mut text = format!(
        "route:    {} on {}\ndecision: {words}\npolicies: {by}\nversion:  {}",
        verdict.route,
        verdict.resource,
        engine.version()
    );
    if !verdict.errors.is_empty() {
        text.push_str(&format!("\nerrors:   {}", verdict.errors.join("; ")));
    }
    Ok(text)
}

fn run(engine: &PolicyEngine, case: &Case) -> Result<(), String> {
    let Decided { decision, got, .. } = decide(engine, case)?;
    let mut expected = case.policies.clone();
    expected.sort();
    if got != case.expect || decision.policies != expected || !decision.errors.is_empty() {
        return Err(format!(
            "expected {:?} by {:?}, got {got:?} by {:?}{}",
            case.expect,
            expected,
            decision.policies,
            if decision.errors.is_empty() {
                String::new()
            } else {
                format!(" (errors: {:?})", decision.errors)
            }
        ));
    }
    Ok(())
}

/// A case's decision, and what it was about.
struct Decided {
    decision: crate::Decision,
    got: Expect,
    /// `METHOD template -> action`.
    route: String,
    /// `Type::"id"`.
    resource: String,
}

/// The decision for a case.
fn decide(engine: &PolicyEngine, case: &Case) -> Result<Decided, String> {
    let (kind, id) = match (&case.principal.user, &case.principal.service_account) {
        (Some(user), None) => (PrincipalKind::User, user.clone()),
        (None, Some(account)) => (PrincipalKind::ServiceAccount, account.clone()),
        _ => return Err("principal needs exactly one of `user` or `service_account`".to_owned()),
    };
    let principal = Principal {
        kind,
        id,
        client_id: None,
        roles: case.principal.roles.clone(),
        scopes: case.principal.scopes.clone().unwrap_or_default(),
        amr: Vec::new(),
        acr: None,
        auth_time: Some(NOW - case.auth_age_s),
        mfa: case.mfa && kind == PrincipalKind::User,
        method: AuthMethod::Jwt,
        issued_at: None,
        email: None,
    };
    let facts = RequestFacts {
        source_ip: std::net::IpAddr::from([192, 0, 2, 10]),
        now_unix: NOW,
        resource: ResourceFacts {
            creator: case.resource.creator.clone(),
            amount: case.resource.amount,
            currency: case.resource.currency.clone(),
            status: case.resource.status.clone(),
            company: case.resource.company.clone(),
            grantee: case.resource.grantee.clone(),
            role: case.resource.role.clone(),
            roles_after: case.resource.roles_after.clone(),
        },
        break_glass_reason: case.break_glass_reason.clone(),
        user_scopes_enforced: case.principal.scopes.is_some(),
        export: case
            .export
            .as_ref()
            .map(|e| ExportFacts {
                rows_requested: e.rows,
                within_limits: e.within_limits,
                approved: e.approved,
            })
            .unwrap_or_default(),
    };
    let (decision, route, resource) = match case.request.split_once(" on ") {
        // An act without a route: "ACTION on TYPE ID".
        Some((action, target)) => {
            let (resource_type, resource_id) = target
                .split_once(' ')
                .ok_or_else(|| format!("request `{}` is not `ACTION on TYPE ID`", case.request))?;
            let target = crate::request::Target {
                action,
                resource_type,
                resource_id,
            };
            (
                engine.authorize_target(&principal, target, &facts),
                format!("(no route) -> action `{action}`"),
                format!("{resource_type}::\"{resource_id}\""),
            )
        }
        None => {
            let (method, path) = case
                .request
                .split_once(' ')
                .ok_or_else(|| format!("request `{}` is not `METHOD /path`", case.request))?;
            let segments: Vec<String> = path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let route = engine
                .routes()
                .find(method, &segments)
                .ok_or_else(|| format!("no route matches `{}`", case.request))?;
            (
                engine.authorize(&principal, &route, &facts),
                format!(
                    "{} {} -> action `{}`",
                    route.route.method, route.route.template, route.route.action
                ),
                format!("{}::\"{}\"", route.route.resource_type, route.resource_id),
            )
        }
    };
    let user = principal.kind == PrincipalKind::User;
    let got = match (decision.effect, decision.step_up) {
        (Effect::Allow, _) => Expect::Allow,
        (Effect::Deny, Some(_)) if user => Expect::StepUp,
        (Effect::Deny, _) if decision.approval_required && user => Expect::ApprovalRequired,
        (Effect::Deny, _) => Expect::Deny,
    };
    Ok(Decided {
        decision,
        got,
        route,
        resource,
    })
}
