//! The policy folder loaded as one checked unit, and the authorize phase.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, PolicyId, PolicySet, Schema, ValidationMode, Validator,
};
use invoiceguard_authn::Principal;

use crate::cache::DecisionCache;
use crate::config::PolicyConfig;
use crate::decision::{Decision, Effect, StepUp};
use crate::entities::{ENTITIES_FILE, Entities, Limits};
use crate::problem::{LoadError, Problem};
use crate::request::{self, Inputs, RequestFacts};
use crate::routes::{RouteMatch, RouteTable};

/// The schema file's name in the policy folder.
pub const SCHEMA_FILE: &str = "schema.cedarschema";
/// The routes file's name in the policy folder.
pub const ROUTES_FILE: &str = "routes.toml";

/// A loaded, validated policy folder.
pub struct PolicyEngine {
    policies: PolicySet,
    /// For each action, the policies that can apply to it (what a request is decided on).
    by_action: HashMap<cedar_policy::EntityUid, PolicySet>,
    /// The step-up demand of each forbid that carries `@step_up` / `@step_up_max_age`.
    step_ups: HashMap<String, StepUp>,
    routes: RouteTable,
    entities: Entities,
    version: String,
    authorizer: Authorizer,
    /// Type names and action entities, prepared once for every request.
    prepared: request::Prepared,
    /// Decisions of recent requests, by everything they were decided on.
    cache: DecisionCache,
}

impl PolicyEngine {
    /// Loads the policy folder: the schema, every `*.cedar` file (each policy with a unique
    /// `@id`, validated strictly against the schema) and the routes (each naming an action and a
    /// resource type the schema knows, and that the action applies to). Every problem found is
    /// returned, with its file and position.
    pub fn load(config: &PolicyConfig) -> Result<Self, LoadError> {
        let dir = &config.dir;
        let mut problems = Vec::new();
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);

        let schema_path = dir.join(SCHEMA_FILE);
        let schema = read(&schema_path, &mut problems).and_then(|text| {
            digest.update(text.as_bytes());
            match Schema::from_cedarschema_str(&text) {
                Ok((schema, _warnings)) => Some(schema),
                Err(error) => {
                    problems.push(Problem::from_diagnostic(&schema_path, &text, &error));
                    None
                }
            }
        });

        let mut sources: HashMap<String, (PathBuf, String)> = HashMap::new();
        let mut step_ups = HashMap::new();
        let mut policies = PolicySet::new();
        for path in cedar_files(dir, &mut problems) {
            let Some(text) = read(&path, &mut problems) else {
                continue;
            };
            digest.update(
                path.file_name()
                    .map(|n| n.as_encoded_bytes())
                    .unwrap_or_default(),
            );
            digest.update(text.as_bytes());
            add_policies(
                &path,
                &text,
                &mut policies,
                &mut sources,
                &mut step_ups,
                &mut problems,
            );
        }
        if sources.is_empty() && problems.is_empty() {
            problems.push(Problem::in_file(
                dir,
                "no policy: every request would be denied",
            ));
        }

        let routes_path = dir.join(ROUTES_FILE);
        let routes_text = read(&routes_path, &mut problems).unwrap_or_default();
        digest.update(routes_text.as_bytes());
        let routes = RouteTable::parse(&routes_path, &routes_text, &mut problems);

        let entities_path = dir.join(ENTITIES_FILE);
        if let Ok(text) = std::fs::read(&entities_path) {
            digest.update(&text);
        }
        let entities = Entities::load(&entities_path, &mut problems);

        let Some(schema) = schema else {
            return Err(LoadError(problems));
        };
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        for error in validation.validation_errors() {
            let (path, text) = sources
                .get(&error.policy_id().to_string())
                .map(|(p, t)| (p.as_path(), t.as_str()))
                .unwrap_or((dir.as_path(), ""));
            problems.push(Problem::from_diagnostic(path, text, error));
        }
        check_routes(&schema, &routes, &routes_path, &routes_text, &mut problems);

        if !problems.is_empty() {
            return Err(LoadError(problems));
        }
        let version = digest
            .finish()
            .as_ref()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        let prepared = request::Prepared::new(&schema).map_err(|error| {
            LoadError(vec![Problem::in_file(
                &schema_path,
                format!("cannot prepare the schema: {error}"),
            )])
        })?;
        let by_action = prepared.policies_by_action(&policies).map_err(|error| {
            LoadError(vec![Problem::in_file(
                dir,
                format!("cannot index the policies by action: {error}"),
            )])
        })?;
        Ok(Self {
            prepared,
            by_action,
            policies,
            step_ups,
            routes,
            entities,
            version,
            authorizer: Authorizer::new(),
            cache: DecisionCache::new(config.decision_cache_entries),
        })
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// A short content hash of the schema, policies and routes: the policy-set version recorded in
    /// audit events.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The principal's approval limit and export quota, from `entities.toml`.
    pub fn limits(&self, principal: &Principal) -> Limits {
        self.entities.limits(principal)
    }

    /// How many policies are loaded.
    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// Decides whether `principal` may perform the route's action on its resource. A request
    /// whose inputs repeat a recent one's exactly gets that one's decision from the cache.
    pub fn authorize(
        &self,
        principal: &Principal,
        route: &RouteMatch<'_>,
        facts: &RequestFacts,
    ) -> Decision {
        let inputs = Inputs::new(principal, route, facts, self.entities.limits(principal));
        if let Some(kept) = self.cache.get(&inputs) {
            return kept;
        }
        let decision = self.evaluate(&inputs, Subset::ByAction);
        self.cache.insert(inputs, &decision);
        decision
    }

    /// Evaluates the request on the policies of `subset`, never from the cache.
    fn evaluate(&self, inputs: &Inputs, subset: Subset) -> Decision {
        let cedar = match request::build(&self.prepared, inputs) {
            Ok(cedar) => cedar,
            Err(error) => {
                return Decision {
                    effect: Effect::Deny,
                    policies: Vec::new(),
                    errors: vec![format!("request does not fit the schema: {error}")],
                    step_up: None,
                };
            }
        };
        let policies = match subset {
            Subset::ByAction => self.by_action.get(&cedar.action).unwrap_or(&self.policies),
            Subset::All => &self.policies,
        };
        let response = self
            .authorizer
            .is_authorized(&cedar.request, policies, &cedar.entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policies.sort();
        let effect = match response.decision() {
            CedarDecision::Allow => Effect::Allow,
            CedarDecision::Deny => Effect::Deny,
        };
        let step_up = match effect {
            Effect::Deny if !policies.is_empty() => {
                policies.iter().try_fold(StepUp::default(), |demand, id| {
                    self.step_ups.get(id).map(|more| demand.combine(*more))
                })
            }
            _ => None,
        };
        Decision {
            effect,
            step_up,
            policies,
            errors: response
                .diagnostics()
                .errors()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

/// Which policies a request is evaluated against: those whose scope can include its action
/// (always, in the product), or all of them (to check, in tests, that the answer is the same).
#[derive(Clone, Copy)]
enum Subset {
    ByAction,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the equivalence test's reference")
    )]
    All,
}

fn read(path: &Path, problems: &mut Vec<Problem>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) => {
            problems.push(Problem::in_file(path, format!("cannot read: {error}")));
            None
        }
    }
}

/// The folder's `*.cedar` files, sorted by name.
fn cedar_files(dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(Problem::in_file(
                dir,
                format!("cannot read the policy folder: {error}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cedar") && path.is_file())
        .collect();
    files.sort();
    files
}

/// Parses one policy file and adds its policies under their `@id`s.
fn add_policies(
    path: &Path,
    text: &str,
    policies: &mut PolicySet,
    sources: &mut HashMap<String, (PathBuf, String)>,
    step_ups: &mut HashMap<String, StepUp>,
    problems: &mut Vec<Problem>,
) {
    let parsed = match PolicySet::from_str(text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for error in errors.iter() {
                problems.push(Problem::from_diagnostic(path, text, error));
            }
            return;
        }
    };
    if parsed.templates().next().is_some() {
        problems.push(Problem::in_file(
            path,
            "policy templates are not supported; write static policies",
        ));
    }
    // Cedar names a file's policies policy0, policy1… in order; sort so the messages follow the file.
    let ordered: BTreeMap<usize, _> = parsed
        .policies()
        .map(|p| {
            let index = p
                .id()
                .to_string()
                .trim_start_matches("policy")
                .parse()
                .unwrap_or(usize::MAX);
            (index, p)
        })
        .collect();
    for (index, policy) in ordered {
        let Some(id) = policy.annotation("id") else {
            problems.push(Problem::in_file(
                path,
                format!("policy number {} has no `@id(\"…\")` annotation", index + 1),
            ));
            continue;
        };
        // Where this policy's `@id` is in the file: the second one of a file that uses it twice.
        let id_text = format!("@id(\"{id}\")");
        let same_file = sources.get(id).is_some_and(|(other, _)| other == path);
        let id_at = text
            .match_indices(&id_text)
            .nth(usize::from(same_file))
            .map(|(at, _)| at);
        let here = |message: String| match id_at {
            Some(at) => Problem::at(path, text, at, message),
            None => Problem::in_file(path, message),
        };
        if let Some((other, _)) = sources.get(id) {
            problems.push(here(format!(
                "policy id `{id}` is also used in `{}`",
                other.display()
            )));
            continue;
        }
        match step_up(policy) {
            Ok(Some(demand)) => {
                step_ups.insert(id.to_owned(), demand);
            }
            Ok(None) => {}
            Err(message) => {
                // At the annotation when it can be found after the policy's `@id`, else the `@id`.
                let annotation_at = id_at.and_then(|start| {
                    let rest = &text[start + 1..];
                    let policy_text = &rest[..rest.find("@id(").unwrap_or(rest.len())];
                    ["@step_up_max_age(", "@step_up("]
                        .iter()
                        .filter_map(|needle| policy_text.find(needle).map(|at| start + 1 + at))
                        .min()
                });
                problems.push(match annotation_at {
                    Some(at) => Problem::at(path, text, at, format!("policy `{id}`: {message}")),
                    None => here(format!("policy `{id}`: {message}")),
                });
                continue;
            }
        }
        if let Err(error) = policies.add(policy.new_id(PolicyId::new(id))) {
            problems.push(Problem::in_file(path, error.to_string()));
            continue;
        }
        sources.insert(id.to_owned(), (path.to_owned(), text.to_owned()));
    }
}

/// A forbid's step-up annotations: `@step_up("mfa")` and `@step_up_max_age("seconds")`.
fn step_up(policy: &cedar_policy::Policy) -> Result<Option<StepUp>, String> {
    let mfa = match policy.annotation("step_up") {
        None => false,
        Some("mfa") => true,
        Some(other) => {
            return Err(format!(
                "`@step_up(\"{other}\")` is not understood; write `@step_up(\"mfa\")`"
            ));
        }
    };
    let max_age_s =
        match policy.annotation("step_up_max_age") {
            None => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                format!("`@step_up_max_age(\"{text}\")` must be a number of seconds")
            })?),
        };
    if !mfa && max_age_s.is_none() {
        return Ok(None);
    }
    if policy.effect() != cedar_policy::Effect::Forbid {
        return Err("step-up annotations belong on forbid policies".to_owned());
    }
    Ok(Some(StepUp { mfa, max_age_s }))
}

/// Every route must name an action of the schema that applies to the route's resource type.
fn check_routes(
    schema: &Schema,
    routes: &RouteTable,
    path: &Path,
    text: &str,
    problems: &mut Vec<Problem>,
) {
    for route in routes.routes() {
        let Ok(action) = request::uid("Action", &route.action) else {
            problems.push(Problem::at(
                path,
                text,
                route.action_at,
                format!("`{}` is not a valid action id", route.action),
            ));
            continue;
        };
        let Some(mut resource_types) = schema.resources_for_action(&action) else {
            problems.push(Problem::at(
                path,
                text,
                route.action_at,
                format!("action `{}` is not in the schema", route.action),
            ));
            continue;
        };
        if !resource_types.any(|t| t.to_string() == route.resource_type) {
            problems.push(Problem::at(
                path,
                text,
                route.resource_at,
                format!(
                    "action `{}` does not apply to resource type `{}`",
                    route.action, route.resource_type
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
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
                        client_id: (kind == PrincipalKind::ServiceAccount)
                            .then(|| "p-1".to_owned()),
                        roles: vec![role.to_owned()],
                        scopes: vec!["invoices:read".to_owned(), "invoices:write".to_owned()],
                        amr: Vec::new(),
                        acr: None,
                        auth_time: Some(now - age),
                        mfa,
                        method: AuthMethod::Jwt,
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
    /// decide through them), and the context record equals the one built from expressions.
    #[test]
    fn requests_are_built_as_cedars_public_api_would() {
        let engine = baseline(0);
        for case in &grid(&engine) {
            let inputs = inputs(&engine, case);
            let built = request::build(&engine.prepared, &inputs).unwrap();
            let closed =
                cedar_policy::Entities::from_entities(built.entities.iter().cloned(), None)
                    .unwrap();
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
    const CHANGES: [Change; 10] = [
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
}
