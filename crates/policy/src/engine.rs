//! The policy folder loaded as one checked unit, and the authorize phase.

use std::collections::{BTreeMap, HashMap, HashSet};
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
use crate::request::{self, Inputs, RequestFacts, Target};
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
    /// The forbids that carry `@approval("export")`: another person's approval lifts them.
    approvals: HashSet<String>,
    routes: RouteTable,
    entities: Entities,
    version: String,
    authorizer: Authorizer,
    /// Type names and action entities, prepared once for every request.
    prepared: request::Prepared,
    /// Decisions of recent requests, by everything they were decided on.
    cache: DecisionCache,
    /// Each file of the folder by relative path, with its SHA-256 (what a change is told by).
    files: BTreeMap<String, String>,
    /// The key that signed the folder, when it is signed.
    signer: Option<String>,
}

/// What changed from one policy set to another: for the reload's audit event and `policy diff`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Files added, removed or changed (by relative path).
    pub files: Vec<String>,
    /// Policies (by `@id`) only in the new set.
    pub added: Vec<String>,
    /// Policies only in the old set.
    pub removed: Vec<String>,
    /// Policies in both whose text differs.
    pub changed: Vec<String>,
    /// Routes (`METHOD template -> action`) only in the new set.
    pub routes_added: Vec<String>,
    /// Routes only in the old set.
    pub routes_removed: Vec<String>,
}

impl std::fmt::Display for Changes {
    /// One line: `files changed: …; policies added: …; …`, or `no change`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            ("files changed", &self.files),
            ("policies added", &self.added),
            ("policies removed", &self.removed),
            ("policies changed", &self.changed),
            ("routes added", &self.routes_added),
            ("routes removed", &self.routes_removed),
        ]
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(what, list)| format!("{what}: {}", list.join(", ")))
        .collect();
        if parts.is_empty() {
            f.write_str("no change")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

impl PolicyEngine {
    /// Loads the policy folder: the schema, every `*.cedar` file (each policy with a unique
    /// `@id`, validated strictly against the schema) and the routes (each naming an action and a
    /// resource type the schema knows, and that the action applies to). Every problem found is
    /// returned, with its file and position.
    pub fn load(config: &PolicyConfig) -> Result<Self, LoadError> {
        let dir = &config.dir;
        let mut problems = Vec::new();
        // Every file is read once, and what is checked, signed and loaded is these bytes.
        let folder = crate::signature::read_folder(dir).map_err(|error| {
            LoadError(vec![Problem::in_file(
                dir,
                format!("cannot read the policy folder: {error}"),
            )])
        })?;
        let signer = if config.signed_by.is_empty() {
            None
        } else {
            for problem in crate::signature::check_keys(&config.signed_by) {
                problems.push(Problem::in_file(dir, problem));
            }
            match crate::signature::verify_files(dir, &folder, &config.signed_by) {
                Ok(key) => Some(key),
                Err(why) => {
                    problems.push(Problem::in_file(
                        &dir.join(crate::signature::SIGNATURE_FILE),
                        why,
                    ));
                    None
                }
            }
        };
        let files = crate::signature::digests_of(&folder);
        let read = |name: &str, problems: &mut Vec<Problem>| text(&folder, dir, name, problems);
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);

        let schema_path = dir.join(SCHEMA_FILE);
        let schema = read(SCHEMA_FILE, &mut problems).and_then(|text| {
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
        let mut approvals = HashSet::new();
        let mut policies = PolicySet::new();
        // The folder's own `*.cedar` files (not its subfolders'), by name.
        for name in folder
            .keys()
            .filter(|name| name.ends_with(".cedar") && !name.contains('/'))
        {
            let path = dir.join(name);
            let Some(text) = read(name, &mut problems) else {
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
                (&mut step_ups, &mut approvals),
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
        let routes_text = read(ROUTES_FILE, &mut problems).unwrap_or_default();
        digest.update(routes_text.as_bytes());
        let routes = RouteTable::parse(&routes_path, &routes_text, &mut problems);

        let entities_path = dir.join(ENTITIES_FILE);
        let entities_text = folder
            .contains_key(ENTITIES_FILE)
            .then(|| read(ENTITIES_FILE, &mut problems))
            .flatten();
        if let Some(text) = &entities_text {
            digest.update(text.as_bytes());
        }
        let entities = Entities::parse(&entities_path, entities_text.as_deref(), &mut problems);

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
            approvals,
            routes,
            entities,
            version,
            authorizer: Authorizer::new(),
            cache: DecisionCache::new(config.decision_cache_entries),
            files,
            signer,
        })
    }

    /// The key that signed the folder (base64), when `signed_by` asked for a signature.
    pub fn signer(&self) -> Option<&str> {
        self.signer.as_deref()
    }

    /// Each policy's text by its `@id`.
    fn texts(&self) -> BTreeMap<String, String> {
        self.policies
            .policies()
            .map(|policy| {
                let id = policy
                    .annotation("id")
                    .map_or_else(|| policy.id().to_string(), str::to_owned);
                (id, policy.to_string())
            })
            .collect()
    }

    /// What changed from `old` to this set: files, policies by `@id`, routes.
    pub fn changes_from(&self, old: &PolicyEngine) -> Changes {
        let mut files: Vec<String> = self
            .files
            .iter()
            .filter(|(name, digest)| old.files.get(*name) != Some(*digest))
            .map(|(name, _)| name.clone())
            .collect();
        files.extend(
            old.files
                .keys()
                .filter(|name| !self.files.contains_key(*name))
                .cloned(),
        );
        files.sort();
        let (new, before) = (self.texts(), old.texts());
        let only = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| -> Vec<String> {
            a.keys()
                .filter(|id| !b.contains_key(*id))
                .cloned()
                .collect()
        };
        let route_names = |engine: &PolicyEngine| -> Vec<String> {
            engine
                .routes
                .routes()
                .iter()
                .map(|r| format!("{} {} -> {}", r.method, r.template, r.action))
                .collect()
        };
        let (new_routes, old_routes) = (route_names(self), route_names(old));
        Changes {
            files,
            added: only(&new, &before),
            removed: only(&before, &new),
            changed: new
                .iter()
                .filter(|(id, text)| before.get(*id).is_some_and(|old| old != *text))
                .map(|(id, _)| id.clone())
                .collect(),
            routes_added: new_routes
                .iter()
                .filter(|r| !old_routes.contains(r))
                .cloned()
                .collect(),
            routes_removed: old_routes
                .iter()
                .filter(|r| !new_routes.contains(r))
                .cloned()
                .collect(),
        }
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

    /// Every entry of `entities.toml`: (`role`, `user` or `service_account`, name, limits).
    pub fn limit_entries(&self) -> Vec<(&'static str, String, Limits)> {
        self.entities.entries()
    }

    /// Every role the policies name (`Role::"…"` anywhere in a policy) or `entities.toml` gives
    /// limits to, sorted: the rows of a role matrix.
    pub fn roles(&self) -> Vec<String> {
        let mut roles = std::collections::BTreeSet::new();
        for policy in self.policies.policies() {
            let text = policy.to_string();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("Role::\"") {
                rest = &rest[at + 7..];
                if let Some(end) = rest.find('"') {
                    roles.insert(rest[..end].to_owned());
                    rest = &rest[end..];
                }
            }
        }
        roles.extend(self.entities.role_names());
        roles.into_iter().collect()
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

    /// Decides an act that has no route of its own (approving an export request at the gateway's
    /// own endpoint): `principal` doing `target.action` on `target`'s resource, with `facts`.
    pub fn authorize_target(
        &self,
        principal: &Principal,
        target: Target<'_>,
        facts: &RequestFacts,
    ) -> Decision {
        let inputs = Inputs::for_target(principal, target, facts, self.entities.limits(principal));
        self.evaluate(&inputs, Subset::ByAction)
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
                    approval_required: false,
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
        // A deny lifted by logging in again (every deciding forbid asks a step-up, or an
        // approval: the login comes first), or by another person's approval (every one asks it).
        let denied = effect == Effect::Deny && !policies.is_empty();
        let approval_required = denied && policies.iter().all(|id| self.approvals.contains(id));
        let step_up = match denied && !approval_required {
            true => policies
                .iter()
                .filter(|id| !self.approvals.contains(*id))
                .try_fold(StepUp::default(), |demand, id| {
                    self.step_ups.get(id).map(|more| demand.combine(*more))
                }),
            false => None,
        };
        Decision {
            effect,
            step_up,
            approval_required,
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

/// A file of the folder as read, as text; a problem when it is missing or not UTF-8.
fn text(
    folder: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let path = dir.join(name);
    match folder.get(name).map(|bytes| std::str::from_utf8(bytes)) {
        Some(Ok(text)) => Some(text.to_owned()),
        Some(Err(_)) => {
            problems.push(Problem::in_file(&path, "cannot read: not UTF-8 text"));
            None
        }
        None => {
            problems.push(Problem::in_file(&path, "cannot read: no such file"));
            None
        }
    }
}

/// Parses one policy file and adds its policies under their `@id`s.
fn add_policies(
    path: &Path,
    text: &str,
    policies: &mut PolicySet,
    sources: &mut HashMap<String, (PathBuf, String)>,
    (step_ups, approvals): (&mut HashMap<String, StepUp>, &mut HashSet<String>),
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
        match approval(policy) {
            Ok(true) => {
                approvals.insert(id.to_owned());
            }
            Ok(false) => {}
            Err(message) => {
                problems.push(here(format!("policy `{id}`: {message}")));
                continue;
            }
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

/// A forbid's four-eyes annotation: `@approval("export")` (another person's approval of this very
/// export lifts it; `context.export_approved` says whether one is used).
fn approval(policy: &cedar_policy::Policy) -> Result<bool, String> {
    match policy.annotation("approval") {
        None => Ok(false),
        Some("export") if policy.effect() == cedar_policy::Effect::Forbid => Ok(true),
        Some("export") => Err("`@approval` belongs on forbid policies".to_owned()),
        Some(other) => Err(format!(
            "`@approval(\"{other}\")` is not understood; write `@approval(\"export\")`"
        )),
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
mod tests;
