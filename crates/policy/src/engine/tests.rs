//! Tests of `engine.rs`.

use std::net::{IpAddr, Ipv4Addr};

use invoiceguard_authn::{AuthMethod, PrincipalKind};

use super::*;
use crate::request::{ExportFacts, ResourceFacts};

fn baseline(decision_cache_entries: usize) -> PolicyEngine {
    PolicyEngine::load(&PolicyConfig {
        dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies").into(),
        watch_ms: 0,
        shadow_dir: None,
        decision_cache_entries,
        signed_by: Vec::new(),
    })
    .unwrap()
}

/// Every route of the baseline, for principals of every role and kind with and without MFA,
/// fresh and stale logins, as the creator or not, over and under limits.
fn grid(engine: &PolicyEngine) -> Vec<(Principal, RouteMatch<'_>, RequestFacts, String)> {
    let now = 1_800_000_000;
    let roles = [
        "invoicing",
        "approver",
        "accountant",
        "admin",
        "auditor",
        "break-glass",
    ];
    let mut cases = Vec::new();
    for route in engine.routes().routes() {
        let segments: Vec<String> = route
            .template
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') {
                    "X-1".to_owned()
                } else {
                    s.to_owned()
                }
            })
            .collect();
        let Some(matched) = engine.routes().find(&route.method, &segments) else {
            continue;
        };
        for (role, mfa, age, mine, rows) in roles.iter().flat_map(|role| {
            [
                (*role, true, 60, false, 10),
                (*role, false, 60, true, 10),
                (*role, true, 4000, true, 5000),
            ]
        }) {
            for kind in [PrincipalKind::User, PrincipalKind::ServiceAccount] {
                let principal = Principal {
                    kind,
                    id: "p-1".to_owned(),
                    client_id: (kind == PrincipalKind::ServiceAccount).then(|| "p-1".to_owned()),
                    roles: vec![role.to_owned()],
                    scopes: vec!["invoices:read".to_owned(), "invoices:write".to_owned()],
                    amr: Vec::new(),
                    acr: None,
                    auth_time: Some(now - age),
                    mfa,
                    method: AuthMethod::Jwt,
                    issued_at: None,
                    email: None,
                };
                let facts = RequestFacts {
                    source_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
                    now_unix: now,
                    resource: ResourceFacts {
                        creator: Some(if mine { "p-1" } else { "p-2" }.to_owned()),
                        amount: Some(if mine { 900_000 } else { 100 }),
                        ..ResourceFacts::default()
                    },
                    export: ExportFacts {
                        rows_requested: rows,
                        within_limits: !mine,
                        approved: mine,
                    },
                    break_glass_reason: mine.then(|| "incident 42".to_owned()),
                    user_scopes_enforced: mine,
                };
                let label = format!(
                    "{} {} as {role} ({kind:?}, mfa {mfa}, age {age}, mine {mine})",
                    route.method, route.template
                );
                cases.push((principal, matched.clone(), facts, label));
            }
        }
    }
    cases
}

fn inputs(
    engine: &PolicyEngine,
    case: &(Principal, RouteMatch<'_>, RequestFacts, String),
) -> Inputs {
    let (principal, route, facts, _) = case;
    Inputs::new(principal, route, facts, engine.entities.limits(principal))
}

/// Over the grid, the decision on the action's policies is the decision on all of them —
/// effect, determining policies, errors, step-up.
#[test]
fn deciding_on_the_actions_policies_is_deciding_on_all() {
    let engine = baseline(0);
    let cases = grid(&engine);
    for case in &cases {
        let inputs = inputs(&engine, case);
        let subset = engine.evaluate(&inputs, Subset::ByAction);
        let all = engine.evaluate(&inputs, Subset::All);
        assert_eq!(subset, all, "{}", case.3);
    }
    assert!(cases.len() > 200, "{}", cases.len());
    let smallest = engine
        .by_action
        .values()
        .map(|set| set.policies().count())
        .min();
    assert!(
        smallest < Some(engine.policy_count()),
        "nothing was left out"
    );
}

/// Over the grid, the request is what Cedar's public API would build: Cedar's transitive
/// closure over the three entities adds no ancestor (an action's groups are closed when the
/// policies load: `deciding_on_the_actions_policies_is_deciding_on_all` and the policy tests
/// decide through them), and the context record and the principal's and resource's entities
/// equal those built from expressions.
#[test]
fn requests_are_built_as_cedars_public_api_would() {
    let engine = baseline(0);
    let mut cases = grid(&engine);
    // Every resource attribute, the grant's too, on a copy of each case.
    let with_all: Vec<_> = cases
        .iter()
        .map(|(principal, route, facts, label)| {
            let mut facts = facts.clone();
            facts.resource = ResourceFacts {
                currency: Some("EUR".to_owned()),
                status: Some("draft".to_owned()),
                company: Some("acme".to_owned()),
                grantee: Some("p-3".to_owned()),
                role: Some("approver".to_owned()),
                roles_after: vec!["approver".to_owned(), "invoicing".to_owned()],
                ..facts.resource
            };
            (
                principal.clone(),
                route.clone(),
                facts,
                format!("{label}, all attributes"),
            )
        })
        .collect();
    cases.extend(with_all);
    for case in &cases {
        let inputs = inputs(&engine, case);
        let built = request::build(&engine.prepared, &inputs).unwrap();
        let closed =
            cedar_policy::Entities::from_entities(built.entities.iter().cloned(), None).unwrap();
        for entity in built.entities.iter() {
            let uid = entity.uid();
            let ours: std::collections::BTreeSet<String> = built
                .entities
                .ancestors(&uid)
                .unwrap()
                .map(ToString::to_string)
                .collect();
            let computed: std::collections::BTreeSet<String> = closed
                .ancestors(&uid)
                .unwrap()
                .map(ToString::to_string)
                .collect();
            assert_eq!(ours, computed, "{uid}: {}", case.3);
        }
        assert_eq!(built.entities.iter().count(), 3, "{}", case.3);
        for reference in inputs.reference_entities(&engine.prepared) {
            let ours = built.entities.get(&reference.uid()).unwrap();
            assert!(
                ours.deep_eq(&reference),
                "{ours} != {reference}: {}",
                case.3
            );
        }
        assert_eq!(
            built.request.context(),
            Some(&inputs.reference_context()),
            "{}",
            case.3
        );
    }
}

/// One input changed: the decision cache must tell the changed request from the original.
type Change = (&'static str, fn(&mut Principal, &mut RequestFacts));
const CHANGES: [Change; 11] = [
    ("mfa", |p, _| p.mfa = !p.mfa),
    ("login age", |p, _| {
        p.auth_time = p.auth_time.map(|t| t - 4000)
    }),
    ("kind", |p, _| {
        p.kind = match p.kind {
            PrincipalKind::User => PrincipalKind::ServiceAccount,
            PrincipalKind::ServiceAccount => PrincipalKind::User,
        }
    }),
    ("roles", |p, _| p.roles = vec!["auditor".to_owned()]),
    ("scopes", |p, _| p.scopes = vec!["invoices:read".to_owned()]),
    ("creator", |_, f| {
        f.resource.creator = match f.resource.creator.as_deref() {
            Some("p-1") => Some("p-2".to_owned()),
            _ => Some("p-1".to_owned()),
        }
    }),
    ("amount", |_, f| {
        f.resource.amount = f.resource.amount.map(|a| a * 1000 + 5_000_000)
    }),
    ("rows", |_, f| f.export.rows_requested += 100_000),
    ("within limits", |_, f| {
        f.export.within_limits = !f.export.within_limits
    }),
    ("approved", |_, f| f.export.approved = !f.export.approved),
    ("break-glass reason", |_, f| {
        f.break_glass_reason = match f.break_glass_reason {
            Some(_) => None,
            None => Some("incident 43".to_owned()),
        }
    }),
];

/// Over the grid, a decision from the cache is the evaluated one: each case is decided (and
/// kept), then the same case with one input changed must get its own evaluated decision —
/// and every change listed does change some decision, so a key that missed it would fail.
/// A second pass takes every decision from the cache.
#[test]
fn a_cached_decision_is_the_evaluated_one() {
    let engine = baseline(1_000_000);
    let cases = grid(&engine);
    let mut changed_some = std::collections::HashSet::new();
    for pass in 0..2 {
        for case in &cases {
            let (principal, route, facts, label) = case;
            let evaluated = engine.evaluate(&inputs(&engine, case), Subset::ByAction);
            assert_eq!(
                engine.authorize(principal, route, facts),
                evaluated,
                "{label}"
            );
            for (name, change) in CHANGES {
                let (mut principal, mut facts) = (principal.clone(), facts.clone());
                change(&mut principal, &mut facts);
                let changed = (principal, route.clone(), facts, String::new());
                let expected = engine.evaluate(&inputs(&engine, &changed), Subset::ByAction);
                let decided = engine.authorize(&changed.0, route, &changed.2);
                assert_eq!(decided, expected, "pass {pass}, {name} changed: {label}");
                if decided != evaluated {
                    changed_some.insert(name);
                }
            }
        }
    }
    for (name, _) in CHANGES {
        assert!(
            changed_some.contains(name),
            "changing {name} changed no decision"
        );
    }
}

/// A request holding more than 1 KiB of text (here a long resource id) is decided as usual
/// but not kept; the same request with a short id is.
#[test]
fn long_requests_are_decided_but_not_kept() {
    let engine = baseline(4096);
    let cases = grid(&engine);
    let (principal, route, facts, label) = &cases[0];
    let mut long = route.clone();
    long.resource_id = "X".repeat(2000);
    let expected = engine.evaluate(
        &Inputs::new(principal, &long, facts, engine.entities.limits(principal)),
        Subset::ByAction,
    );
    assert_eq!(
        engine.authorize(principal, &long, facts),
        expected,
        "{label}"
    );
    assert_eq!(engine.cache.len(), 0, "a long key is not kept");
    engine.authorize(principal, route, facts);
    assert_eq!(engine.cache.len(), 1, "a short one is");
}

/// A full cache starts over: it never holds more than its capacity, and 0 holds nothing.
#[test]
fn the_cache_is_bounded() {
    for capacity in [0, 7] {
        let engine = baseline(capacity);
        for (principal, route, facts, _) in grid(&engine).iter().take(50) {
            engine.authorize(principal, route, facts);
            assert!(engine.cache.len() <= capacity);
        }
    }
}

/// The baseline plus policies of every scope shape (an action, a list, a group, any action; a
/// principal or a role; forbids too), so slices differ from the whole set.
fn baseline_and_generated() -> (PolicyEngine, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("invoiceguard-slices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let baseline = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    for entry in std::fs::read_dir(baseline).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let generated = r#"
@id("gen.one-action")
permit (principal == User::"p-1", action == Action::"invoice:approve", resource);
@id("gen.list")
permit (principal in Role::"auditor", action in [Action::"export:create", Action::"settings:read"], resource)
when { context.mfa };
@id("gen.group")
forbid (principal, action in Action::"read", resource) when { context.auth_age_s > 3000 };
@id("gen.any-action")
forbid (principal == User::"p-9", action, resource);
@id("gen.other-action")
permit (principal, action == Action::"user:assign_role", resource) when { context.mfa };
"#;
    std::fs::write(dir.join("generated.cedar"), generated).unwrap();
    let engine = PolicyEngine::load(&PolicyConfig {
        dir: dir.clone(),
        decision_cache_entries: 0,
        ..PolicyConfig::default()
    })
    .unwrap();
    (engine, dir)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// On generated requests — any route, any mix of roles and scopes, either kind, MFA or not,
    /// any login age, creator, amount and export — the decision on the action's slice of the set
    /// is the decision on the whole set: effect, deciding policies, errors, step-up.
    #[test]
    fn a_slice_decides_as_the_whole_set(
        route_index in 0usize..64,
        roles in proptest::collection::vec(0usize..7, 0..4),
        scopes in proptest::collection::vec(0usize..6, 0..4),
        service in proptest::bool::ANY,
        who in 0usize..3,
        mfa in proptest::bool::ANY,
        age in 0u64..8000,
        creator in 0usize..3,
        amount in 0i64..100_000,
        rows in 0u64..6000,
        within in proptest::bool::ANY,
        reason in proptest::bool::ANY,
        enforced in proptest::bool::ANY,
    ) {
        let (engine, _dir) = ENGINE.get_or_init(baseline_and_generated);
        let names = ["invoicing", "approver", "accountant", "admin", "auditor", "break-glass", "nobody"];
        let scope_names = ["invoices:read", "invoices:write", "invoices:approve", "exports:create", "admin", "reports:read"];
        let ids = ["p-1", "p-2", "p-9"];
        let routes = engine.routes().routes();
        let route = &routes[route_index % routes.len()];
        let segments: Vec<String> = route
            .template
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| if s.starts_with('{') { "X-1".to_owned() } else { s.to_owned() })
            .collect();
        let matched = engine.routes().find(&route.method, &segments).unwrap();
        let now = 1_800_000_000;
        let kind = if service { PrincipalKind::ServiceAccount } else { PrincipalKind::User };
        let principal = Principal {
            kind,
            id: ids[who].to_owned(),
            client_id: None,
            roles: roles.iter().map(|r| names[*r].to_owned()).collect(),
            scopes: scopes.iter().map(|s| scope_names[*s].to_owned()).collect(),
            amr: Vec::new(),
            acr: None,
            auth_time: Some(now - age),
            mfa,
            method: AuthMethod::Jwt,
            issued_at: None,
            email: None,
        };
        let facts = RequestFacts {
            source_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            now_unix: now,
            resource: ResourceFacts {
                creator: Some(ids[creator].to_owned()),
                amount: Some(amount),
                ..ResourceFacts::default()
            },
            export: ExportFacts {
                rows_requested: rows,
                within_limits: within,
                approved: false,
            },
            break_glass_reason: reason.then(|| "incident 42".to_owned()),
            user_scopes_enforced: enforced,
        };
        let inputs = Inputs::new(&principal, &matched, &facts, engine.entities.limits(&principal));
        let slice = engine.evaluate(&inputs, Subset::ByAction);
        let whole = engine.evaluate(&inputs, Subset::All);
        proptest::prop_assert_eq!(slice, whole);
    }
}

static ENGINE: std::sync::OnceLock<(PolicyEngine, std::path::PathBuf)> = std::sync::OnceLock::new();
