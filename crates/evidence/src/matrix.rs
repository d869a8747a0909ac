//! The role matrix, derived by asking the Cedar policies about every role and route rather than
//! copied from documentation: what each role may do, and where multi-factor login is demanded.

use invoiceguard_policy::{Hypothetical, PolicyEngine, decide_hypothetical};

use crate::pack::Table;

/// The subject of every question: nobody's own invoice, a small amount, a small export.
const SOMEONE: &str = "evidence-role-check";

/// The ordinary circumstances of every question: a login a minute old, an invoice someone else
/// created, an amount of 1, an export of 1 row within the quota.
fn ordinary() -> Hypothetical {
    Hypothetical {
        auth_age_s: 60,
        creator: Some("someone-else".to_owned()),
        amount: Some(1),
        export_rows: Some(1),
        export_within_limits: true,
        ..Hypothetical::default()
    }
}

/// A hypothetical request by `who` on a route, with or without MFA.
fn ask(
    engine: &PolicyEngine,
    who: &Hypothetical,
    method: &str,
    template: &str,
    mfa: bool,
) -> &'static str {
    ask_with(engine, who, method, template, mfa, None)
}

/// The same, stating a break-glass reason or not.
fn ask_with(
    engine: &PolicyEngine,
    who: &Hypothetical,
    method: &str,
    template: &str,
    mfa: bool,
    break_glass_reason: Option<&str>,
) -> &'static str {
    let path: String = template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "EXAMPLE-1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let hypothetical = Hypothetical {
        mfa,
        request: format!("{method} {path}"),
        break_glass_reason: break_glass_reason.map(str::to_owned),
        ..who.clone()
    };
    decide_hypothetical(engine, &hypothetical).map_or("error", |verdict| verdict.effect)
}

/// A cell: allowed, allowed only with MFA (or a fresh login), only with a stated break-glass
/// reason, or denied.
fn cell(engine: &PolicyEngine, who: &Hypothetical, method: &str, template: &str) -> String {
    let with_mfa = ask(engine, who, method, template, true);
    let without = ask(engine, who, method, template, false);
    let stated = || {
        ask_with(
            engine,
            who,
            method,
            template,
            true,
            Some("evidence: role matrix"),
        )
    };
    match (with_mfa, without) {
        ("allow", "allow") => "allow",
        ("allow", _) => "allow with MFA",
        ("step_up", _) => "fresh login",
        ("deny", _) if stated() == "allow" => "break-glass reason",
        ("deny", _) => "deny",
        _ => "error",
    }
    .to_owned()
}

/// One row per route, one column per role: what the policy set decides for a person holding
/// only that role, on an invoice someone else created, for a small amount and a small export.
pub(crate) fn roles(engine: &PolicyEngine) -> (Table, Vec<String>) {
    let roles = engine.roles();
    let mut columns = vec!["method", "route", "action"];
    columns.extend(roles.iter().map(String::as_str));
    let mut table = Table::new(
        "role_matrix",
        "Role matrix: what the policies decide for each role on each route",
        &columns,
    );
    for route in engine.routes().routes() {
        let mut row = vec![
            route.method.clone(),
            route.template.clone(),
            route.action.clone(),
        ];
        for role in &roles {
            let who = Hypothetical {
                user: Some(SOMEONE.to_owned()),
                roles: vec![role.clone()],
                ..ordinary()
            };
            row.push(cell(engine, &who, &route.method, &route.template));
        }
        table.row(row);
    }
    (table, roles)
}

/// The actions an integration account's scopes let it perform, as the policies decide.
pub(crate) fn account_actions(engine: &PolicyEngine, name: &str, scopes: &[String]) -> Vec<String> {
    let who = Hypothetical {
        service_account: Some(name.to_owned()),
        scopes: scopes.to_vec(),
        ..ordinary()
    };
    let mut actions: Vec<String> = engine
        .routes()
        .routes()
        .iter()
        .filter(|route| ask(engine, &who, &route.method, &route.template, false) == "allow")
        .map(|route| route.action.clone())
        .collect();
    actions.dedup();
    actions
}
