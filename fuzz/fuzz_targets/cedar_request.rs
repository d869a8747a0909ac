//! Cedar request building and evaluation on the baseline policies, from any principal, route and
//! facts a request could bring: never a panic, and the seed's prohibitions hold whatever the
//! input — a user without MFA is never allowed; nobody approves an invoice they created; an admin
//! never approves or rejects; an export over the quota is never allowed; a break-glass account
//! without a stated reason is never allowed.
#![no_main]

mod baseline;

use std::net::{IpAddr, Ipv4Addr};

use arbitrary::Arbitrary;
use invoiceguard_authn::{AuthMethod, Principal, PrincipalKind};
use invoiceguard_policy::{ExportFacts, RequestFacts, ResourceFacts};
use libfuzzer_sys::fuzz_target;

const ROLES: [&str; 8] = [
    "invoicing",
    "approver",
    "accountant",
    "admin",
    "auditor",
    "break-glass",
    "unknown",
    "",
];
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const PATHS: [&str; 12] = [
    "/invoices",
    "/invoices/INV-1",
    "/invoices/INV-1/approve",
    "/invoices/INV-1/reject",
    "/invoices/INV-1/submit",
    "/partners",
    "/partners/P-1",
    "/partners/P-1/bank-account",
    "/exports",
    "/settings",
    "/users",
    "/audit-log",
];

#[derive(Debug, Arbitrary)]
struct Input {
    service_account: bool,
    id: String,
    roles: Vec<u8>,
    extra_role: Option<String>,
    scopes: Vec<String>,
    amr: Vec<String>,
    acr: Option<String>,
    mfa: bool,
    login_age_s: Option<u16>,
    method: u8,
    path: u8,
    /// The creator is the caller, someone else, or unknown.
    creator: Option<bool>,
    amount: Option<i64>,
    status: Option<String>,
    rows: u32,
    within_limits: bool,
    approved: bool,
    reason: Option<String>,
    ip: u32,
    scopes_enforced: bool,
}

const NOW: u64 = 1_800_000_000;

fuzz_target!(|input: Input| {
    let engine = baseline::engine();
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    let path = PATHS[usize::from(input.path) % PATHS.len()];
    let segments: Vec<String> = path.split('/').skip(1).map(str::to_owned).collect();
    let Some(route) = engine.routes().find(method, &segments) else {
        return;
    };
    let mut roles: Vec<String> = input
        .roles
        .iter()
        .map(|r| ROLES[usize::from(*r) % ROLES.len()].to_owned())
        .chain(input.extra_role.clone())
        .collect();
    roles.sort();
    roles.dedup();
    let principal = Principal {
        kind: if input.service_account {
            PrincipalKind::ServiceAccount
        } else {
            PrincipalKind::User
        },
        id: input.id.clone(),
        client_id: input.service_account.then(|| input.id.clone()),
        roles: roles.clone(),
        scopes: input.scopes.clone(),
        amr: input.amr.clone(),
        acr: input.acr.clone(),
        auth_time: input.login_age_s.map(|age| NOW - u64::from(age)),
        mfa: input.mfa,
        method: AuthMethod::Jwt,
        issued_at: None,
        email: None,
    };
    let creator = input.creator.map(|mine| {
        if mine {
            input.id.clone()
        } else {
            format!("{}-other", input.id)
        }
    });
    let facts = RequestFacts {
        source_ip: IpAddr::V4(Ipv4Addr::from(input.ip)),
        now_unix: NOW,
        resource: ResourceFacts {
            creator: creator.clone(),
            amount: input.amount,
            currency: Some("EUR".to_owned()),
            status: input.status.clone(),
            company: None,
            ..ResourceFacts::default()
        },
        export: ExportFacts {
            rows_requested: u64::from(input.rows),
            within_limits: input.within_limits,
            approved: input.approved,
        },
        break_glass_reason: input.reason.clone(),
        user_scopes_enforced: input.scopes_enforced,
    };
    let decision = engine.authorize(&principal, &route, &facts);
    if !decision.is_allowed() {
        return;
    }
    let action = route.route.action.as_str();
    let user = principal.kind == PrincipalKind::User;
    assert!(
        !user || principal.mfa,
        "a user without MFA was allowed {action}"
    );
    if action == "invoice:approve" {
        assert!(
            !user || creator.as_deref() != Some(principal.id.as_str()),
            "the creator approved"
        );
    }
    if matches!(action, "invoice:approve" | "invoice:reject") {
        assert!(
            !roles.iter().any(|r| r == "admin"),
            "an admin decided {action}"
        );
    }
    if user && input.scopes_enforced {
        let scope = scope_of(action);
        assert!(
            principal.scopes.iter().any(|s| s == scope),
            "a user without {scope} was allowed {action}"
        );
    }
    if action == "export:create" {
        assert!(input.within_limits, "an export over the quota was allowed");
        assert!(
            !user || input.rows <= 500 || input.approved,
            "a bulk export was allowed without another person's approval"
        );
    }
    if roles.iter().any(|r| r == "break-glass") {
        assert!(
            input.reason.as_deref().is_some_and(|r| !r.is_empty()),
            "break-glass without a reason was allowed {action}"
        );
    }
});

/// The scope `policies/scopes.cedar` asks of a person's token for an action.
fn scope_of(action: &str) -> &'static str {
    match action {
        "invoice:list" | "invoice:read" => "invoices:read",
        "invoice:approve" | "invoice:reject" => "invoices:approve",
        a if a.starts_with("invoice:") => "invoices:write",
        "partner:list" | "partner:read" => "partners:read",
        a if a.starts_with("partner:") => "partners:write",
        a if a.starts_with("export:") => "exports:create",
        "report:read" => "reports:read",
        "audit:read" => "audit:read",
        _ => "admin",
    }
}
