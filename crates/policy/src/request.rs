//! Builds the Cedar request for one HTTP request: principal and its entities, action, resource and
//! context.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
    Request, RestrictedExpression, Schema,
};
use cedar_policy_core::ast::{self, PartialValue, Value};
use cedar_policy_core::entities::{NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use invoiceguard_authn::{Principal, PrincipalKind};

use crate::entities::Limits;
use crate::routes::RouteMatch;

/// Facts about the request that come from the connection, the clock, the gateway's records and
/// the upstream rather than the token.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// The client's address.
    pub source_ip: IpAddr,
    /// The time of the request, Unix seconds.
    pub now_unix: u64,
    /// What is known about the resource.
    pub resource: ResourceFacts,
    /// For an export: what it asks and whether the quota holds it.
    pub export: ExportFacts,
    /// The break-glass reason the request states, if any.
    pub break_glass_reason: Option<String>,
    /// Whether a user's token is held to its scopes (`authn.enforce_user_scopes`): the context's
    /// `scopes_enforced`, which the baseline's `scopes.cedar` reads.
    pub user_scopes_enforced: bool,
}

/// Facts about the resource, from the enrich phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ResourceFacts {
    /// The subject that created it.
    pub creator: Option<String>,
    /// Its amount, rounded up to whole currency units.
    pub amount: Option<i64>,
    /// Its currency.
    pub currency: Option<String>,
    /// Its status.
    pub status: Option<String>,
    /// The company (legal entity) issuing it.
    pub company: Option<String>,
    /// For a role grant: who would receive the role.
    pub grantee: Option<String>,
    /// For a role grant: the role granted.
    pub role: Option<String>,
    /// For a role grant: the grantee's roles with it added (as last seen, and granted).
    pub roles_after: Vec<String>,
}

/// Facts about an export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFacts {
    /// Rows asked for (0 when the route is no export).
    pub rows_requested: u64,
    /// Whether the principal's daily quota holds them (true when the route is no export).
    pub within_limits: bool,
    /// Whether another person approved this very export (four eyes) and the approval is used now.
    pub approved: bool,
}

impl Default for ExportFacts {
    fn default() -> Self {
        Self {
            rows_requested: 0,
            within_limits: true,
            approved: false,
        }
    }
}

/// A Cedar request and the entities it is evaluated against.
pub(crate) struct CedarRequest {
    pub(crate) request: Request,
    pub(crate) entities: Entities,
    /// The request's action.
    pub(crate) action: EntityUid,
}

pub(crate) fn uid(entity_type: &str, id: &str) -> Result<EntityUid, String> {
    let name = EntityTypeName::from_str(entity_type)
        .map_err(|e| format!("`{entity_type}` is not an entity type name: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
}

/// The value of `ip("…")` for an address. Cedar parses its extension's name and the address on
/// every call, so the values of recent addresses are kept per thread (at most 1024; then the
/// cache starts over).
fn ip_value(address: IpAddr) -> Result<Value, String> {
    thread_local! {
        static CACHE: std::cell::RefCell<HashMap<IpAddr, Value>> =
            std::cell::RefCell::new(HashMap::new());
    }
    if let Some(value) = CACHE.with_borrow(|cache| cache.get(&address).cloned()) {
        return Ok(value);
    }
    let context = Context::from_pairs([(
        "ip".to_owned(),
        RestrictedExpression::new_ip(address.to_string()),
    )])
    .map_err(|e| e.to_string())?;
    let value = match context.as_ref() {
        ast::Context::Value(record) => record.get("ip").cloned(),
        ast::Context::RestrictedResidual(_) => None,
    }
    .ok_or_else(|| format!("`{address}` gives no ip value"))?;
    CACHE.with_borrow_mut(|cache| {
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(address, value.clone());
    });
    Ok(value)
}

/// What every request shares, prepared once when the policy folder loads: the entity type names,
/// parsed (Cedar's parser is not free), and for each action its entity with every group it is
/// in, directly or not, as its parents.
pub(crate) struct Prepared {
    names: HashMap<String, EntityTypeName>,
    actions: HashMap<EntityUid, Action>,
}

/// An action, prepared: its entity (with all its groups as parents), and those groups.
struct Action {
    entity: ast::Entity,
    groups: HashSet<EntityUid>,
}

impl Prepared {
    /// Parses the schema's entity types (and `Action`) and builds its action entities.
    pub(crate) fn new(schema: &Schema) -> Result<Self, String> {
        let mut names: HashMap<String, EntityTypeName> = schema
            .entity_types()
            .map(|name| (name.to_string(), name.clone()))
            .collect();
        let action = EntityTypeName::from_str("Action").map_err(|e| e.to_string())?;
        names.insert("Action".to_owned(), action);
        let all = schema.action_entities().map_err(|e| e.to_string())?;
        let mut actions = HashMap::new();
        for entity in all.iter() {
            let action = entity.uid();
            let groups: HashSet<EntityUid> = all
                .ancestors(&action)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let entity = Entity::new_no_attrs(action.clone(), groups.clone())
                .as_ref()
                .clone();
            actions.insert(action, Action { entity, groups });
        }
        Ok(Self { names, actions })
    }

    /// Each action with the policies whose action scope can include it (`action`, `action ==`
    /// it, `action in` it or one of its groups). A policy whose scope excludes the action can
    /// never apply to it, so deciding on this subset gives the same answer, the same
    /// determining policies and the same errors as on the whole set, with less to evaluate.
    pub(crate) fn policies_by_action(
        &self,
        policies: &PolicySet,
    ) -> Result<HashMap<EntityUid, PolicySet>, String> {
        let mut by_action = HashMap::new();
        for (action, prepared) in &self.actions {
            let mut subset = PolicySet::new();
            for policy in policies.policies() {
                let applies = match policy.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(only) => only == *action,
                    ActionConstraint::In(named) => named
                        .iter()
                        .any(|group| group == action || prepared.groups.contains(group)),
                };
                if applies {
                    subset.add(policy.clone()).map_err(|e| e.to_string())?;
                }
            }
            by_action.insert(action.clone(), subset);
        }
        Ok(by_action)
    }

    fn uid(&self, entity_type: &str, id: &str) -> Result<EntityUid, String> {
        match self.names.get(entity_type) {
            Some(name) => Ok(EntityUid::from_type_name_and_id(
                name.clone(),
                EntityId::new(id),
            )),
            None => uid(entity_type, id),
        }
    }
}

/// Everything a Cedar request is built from, as plain values. The request is built from these
/// alone, and Cedar's evaluation is deterministic, so two requests with equal inputs get the same
/// decision from the same policy set: what the decision cache relies on.
/// The action and resource a decision is about, named directly.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The Cedar action id, e.g. `export:approve_request`.
    pub action: &'a str,
    /// The resource's entity type, e.g. `ExportRequest`.
    pub resource_type: &'a str,
    /// The resource's id.
    pub resource_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Inputs {
    principal: PrincipalInputs,
    action: String,
    resource_type: String,
    resource_id: String,
    resource: ResourceFacts,
    context: ContextInputs,
}

/// The principal's entity: a user with its roles and approval limit, or an integration account
/// with its scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PrincipalInputs {
    User {
        id: String,
        roles: Vec<String>,
        scopes: Vec<String>,
        approval_limit: i64,
    },
    ServiceAccount {
        id: String,
        scopes: Vec<String>,
    },
}

/// The request's context, as the schema declares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ContextInputs {
    mfa: bool,
    interactive: bool,
    source_ip: IpAddr,
    acr: String,
    auth_age_s: i64,
    export_rows_requested: i64,
    export_within_limits: bool,
    export_approved: bool,
    break_glass_reason: String,
    hour_utc: i64,
    day_of_week: i64,
    scopes_enforced: bool,
}

impl Inputs {
    /// What the request is decided on: the principal as its entity holds it, the route's action
    /// and resource, what is known about the resource, and the context (times in whole seconds,
    /// hours and days).
    pub(crate) fn new(
        principal: &Principal,
        route: &RouteMatch<'_>,
        facts: &RequestFacts,
        limits: Limits,
    ) -> Self {
        let target = Target {
            action: &route.route.action,
            resource_type: &route.route.resource_type,
            resource_id: &route.resource_id,
        };
        Self::for_target(principal, target, facts, limits)
    }

    /// What an act with no route of its own is decided on (approving an export request at the
    /// gateway's own endpoint): the same, for an action and resource named directly.
    pub(crate) fn for_target(
        principal: &Principal,
        target: Target<'_>,
        facts: &RequestFacts,
        limits: Limits,
    ) -> Self {
        let principal_inputs = match principal.kind {
            PrincipalKind::User => PrincipalInputs::User {
                id: principal.id.clone(),
                roles: principal.roles.clone(),
                scopes: principal.scopes.clone(),
                approval_limit: i64::try_from(limits.approval_limit).unwrap_or(i64::MAX),
            },
            PrincipalKind::ServiceAccount => PrincipalInputs::ServiceAccount {
                id: principal.id.clone(),
                scopes: principal.scopes.clone(),
            },
        };
        let context = ContextInputs {
            mfa: principal.mfa,
            interactive: principal.kind == PrincipalKind::User,
            source_ip: facts.source_ip,
            acr: principal.acr.clone().unwrap_or_default(),
            auth_age_s: principal
                .auth_age_s(facts.now_unix)
                .and_then(|age| i64::try_from(age).ok())
                .unwrap_or(i64::MAX),
            export_rows_requested: i64::try_from(facts.export.rows_requested).unwrap_or(i64::MAX),
            export_within_limits: facts.export.within_limits,
            export_approved: facts.export.approved,
            break_glass_reason: facts.break_glass_reason.clone().unwrap_or_default(),
            hour_utc: i64::try_from(facts.now_unix % 86_400 / 3600).unwrap_or(0),
            // 1970-01-01 was a Thursday (4).
            day_of_week: i64::try_from((facts.now_unix / 86_400 + 3) % 7 + 1).unwrap_or(1),
            scopes_enforced: facts.user_scopes_enforced && principal.kind == PrincipalKind::User,
        };
        Self {
            principal: principal_inputs,
            action: target.action.to_owned(),
            resource_type: target.resource_type.to_owned(),
            resource_id: target.resource_id.to_owned(),
            resource: facts.resource.clone(),
            context,
        }
    }

    /// The bytes of text the inputs hold (ids, names, facts, the reason): what keeping them as a
    /// key costs, beyond a fixed part.
    pub(crate) fn text_bytes(&self) -> usize {
        let (id, roles, scopes): (_, &[String], _) = match &self.principal {
            PrincipalInputs::User {
                id, roles, scopes, ..
            } => (id, roles, scopes),
            PrincipalInputs::ServiceAccount { id, scopes } => (id, &[], scopes),
        };
        let facts = &self.resource;
        id.len()
            + roles.iter().chain(scopes).map(String::len).sum::<usize>()
            + self.action.len()
            + self.resource_type.len()
            + self.resource_id.len()
            + facts.roles_after.iter().map(String::len).sum::<usize>()
            + [
                &facts.creator,
                &facts.currency,
                &facts.status,
                &facts.company,
                &facts.grantee,
                &facts.role,
            ]
            .into_iter()
            .flatten()
            .map(String::len)
            .sum::<usize>()
            + self.context.acr.len()
            + self.context.break_glass_reason.len()
    }
}

#[cfg(test)]
impl Inputs {
    /// The context as Cedar's public API builds it, from expressions: what `build`'s record of
    /// values must equal.
    pub(crate) fn reference_context(&self) -> Context {
        let c = &self.context;
        let pairs = [
            ("mfa", RestrictedExpression::new_bool(c.mfa)),
            ("interactive", RestrictedExpression::new_bool(c.interactive)),
            (
                "source_ip",
                RestrictedExpression::new_ip(c.source_ip.to_string()),
            ),
            ("acr", RestrictedExpression::new_string(c.acr.clone())),
            ("auth_age_s", RestrictedExpression::new_long(c.auth_age_s)),
            (
                "export_rows_requested",
                RestrictedExpression::new_long(c.export_rows_requested),
            ),
            (
                "export_within_limits",
                RestrictedExpression::new_bool(c.export_within_limits),
            ),
            (
                "export_approved",
                RestrictedExpression::new_bool(c.export_approved),
            ),
            (
                "break_glass_reason",
                RestrictedExpression::new_string(c.break_glass_reason.clone()),
            ),
            ("hour_utc", RestrictedExpression::new_long(c.hour_utc)),
            ("day_of_week", RestrictedExpression::new_long(c.day_of_week)),
            (
                "scopes_enforced",
                RestrictedExpression::new_bool(c.scopes_enforced),
            ),
        ];
        Context::from_pairs(pairs.map(|(name, value)| (name.to_owned(), value)))
            .expect("the reference context")
    }

    /// The principal's and the resource's entities as Cedar's public API builds them, from
    /// expressions: what `build`'s entities of values must equal.
    pub(crate) fn reference_entities(&self, prepared: &Prepared) -> [Entity; 2] {
        let uid = |entity_type: &str, id: &str| prepared.uid(entity_type, id).unwrap();
        let scopes = |scopes: &[String]| {
            RestrictedExpression::new_set(
                scopes.iter().cloned().map(RestrictedExpression::new_string),
            )
        };
        let principal = match &self.principal {
            PrincipalInputs::User {
                id,
                roles,
                scopes: granted,
                approval_limit,
            } => Entity::new(
                uid("User", id),
                HashMap::from([
                    (
                        "approval_limit".to_owned(),
                        RestrictedExpression::new_long(*approval_limit),
                    ),
                    ("scopes".to_owned(), scopes(granted)),
                ]),
                roles.iter().map(|role| uid("Role", role)).collect(),
            ),
            PrincipalInputs::ServiceAccount {
                id,
                scopes: granted,
            } => Entity::new(
                uid("ServiceAccount", id),
                HashMap::from([("scopes".to_owned(), scopes(granted))]),
                HashSet::new(),
            ),
        };
        let f = &self.resource;
        let mut attrs = HashMap::new();
        let entity = |t: &str, id: &str| RestrictedExpression::new_entity_uid(uid(t, id));
        if let Some(creator) = &f.creator {
            attrs.insert("creator".to_owned(), entity("User", creator));
        }
        if let Some(amount) = f.amount {
            attrs.insert("amount".to_owned(), RestrictedExpression::new_long(amount));
        }
        for (name, value) in [
            ("currency", &f.currency),
            ("status", &f.status),
            ("company", &f.company),
        ] {
            if let Some(value) = value {
                attrs.insert(
                    name.to_owned(),
                    RestrictedExpression::new_string(value.clone()),
                );
            }
        }
        if let (Some(grantee), Some(role)) = (&f.grantee, &f.role) {
            let after = f.roles_after.iter().map(|role| entity("Role", role));
            attrs.insert("grantee".to_owned(), entity("User", grantee));
            attrs.insert("role".to_owned(), entity("Role", role));
            attrs.insert(
                "roles_after".to_owned(),
                RestrictedExpression::new_set(after),
            );
        }
        let resource = Entity::new(
            uid(&self.resource_type, &self.resource_id),
            attrs,
            HashSet::new(),
        );
        [principal.unwrap(), resource.unwrap()]
    }
}

/// Builds the request from its inputs. Its shape is the schema's by construction — typed values,
/// entity types from the schema, routes checked against it at load — so it is not validated
/// again per request; a failure means an id Cedar cannot hold (the caller denies).
pub(crate) fn build(prepared: &Prepared, inputs: &Inputs) -> Result<CedarRequest, String> {
    let (principal_uid, principal_entity) = principal_entity(prepared, &inputs.principal)?;
    let action = prepared.uid("Action", &inputs.action)?;
    let action_entity = prepared.actions.get(&action).map(|a| a.entity.clone());
    let resource = prepared.uid(&inputs.resource_type, &inputs.resource_id)?;
    let c = &inputs.context;
    // The context as a record of values: Cedar's `Context::from_pairs` would build expressions
    // and evaluate them back into these values for every request.
    let context = Context::from(ast::Context::Value(Arc::new(BTreeMap::from([
        ("mfa".into(), Value::from(c.mfa)),
        ("interactive".into(), Value::from(c.interactive)),
        ("source_ip".into(), ip_value(c.source_ip)?),
        ("acr".into(), Value::from(c.acr.as_str())),
        ("auth_age_s".into(), Value::from(c.auth_age_s)),
        (
            "export_rows_requested".into(),
            Value::from(c.export_rows_requested),
        ),
        (
            "export_within_limits".into(),
            Value::from(c.export_within_limits),
        ),
        ("export_approved".into(), Value::from(c.export_approved)),
        (
            "break_glass_reason".into(),
            Value::from(c.break_glass_reason.as_str()),
        ),
        ("hour_utc".into(), Value::from(c.hour_utc)),
        ("day_of_week".into(), Value::from(c.day_of_week)),
        ("scopes_enforced".into(), Value::from(c.scopes_enforced)),
    ]))));
    let request = Request::new(
        principal_uid,
        action.clone(),
        resource.clone(),
        context,
        None,
    )
    .map_err(|e| e.to_string())?;
    let facts = &inputs.resource;
    // Attributes as values: Cedar's public `Entity::new` takes expressions and evaluates each
    // back into its value for every request (a tenth of a decision without caches).
    let mut resource_attrs: Vec<(&'static str, Value)> = Vec::new();
    if let Some(creator) = &facts.creator {
        resource_attrs.push(("creator", entity_value(prepared.uid("User", creator)?)));
    }
    if let Some(amount) = facts.amount {
        resource_attrs.push(("amount", Value::from(amount)));
    }
    for (name, value) in [
        ("currency", &facts.currency),
        ("status", &facts.status),
        ("company", &facts.company),
    ] {
        if let Some(value) = value {
            resource_attrs.push((name, Value::from(value.as_str())));
        }
    }
    if let (Some(grantee), Some(role)) = (&facts.grantee, &facts.role) {
        let roles_after = facts
            .roles_after
            .iter()
            .map(|role| prepared.uid("Role", role).map(entity_value))
            .collect::<Result<Vec<_>, String>>()?;
        resource_attrs.extend([
            ("grantee", entity_value(prepared.uid("User", grantee)?)),
            ("role", entity_value(prepared.uid("Role", role)?)),
            ("roles_after", Value::set(roles_after, None)),
        ]);
    }
    let resource_entity = core_entity(resource, resource_attrs, HashSet::new());
    // Three entities: the principal (its roles as parents), the resource and the action (its
    // groups as parents). Roles and action groups have no attributes, so `in` needs nothing
    // more. Their parents are already closed (roles and the resource have none; an action's are
    // all its groups, from `Prepared`), yet Cedar's public constructors compute the transitive
    // closure again — a third of a decision — so Cedar's core constructor is told it is done
    // (the tests check it is).
    let entities = cedar_policy_core::entities::Entities::from_entities(
        [principal_entity, resource_entity]
            .into_iter()
            .chain(action_entity),
        None::<&NoEntitiesSchema>,
        TCComputation::AssumeAlreadyComputed,
        Extensions::all_available(),
    )
    .map_err(|e| e.to_string())?;
    let entities = Entities::from(entities);
    Ok(CedarRequest {
        request,
        entities,
        action,
    })
}

/// The principal's entity, with its roles as parents.
fn principal_entity(
    prepared: &Prepared,
    principal: &PrincipalInputs,
) -> Result<(EntityUid, ast::Entity), String> {
    match principal {
        PrincipalInputs::User {
            id,
            roles,
            scopes,
            approval_limit,
        } => {
            let me = prepared.uid("User", id)?;
            let roles = roles
                .iter()
                .map(|role| prepared.uid("Role", role).map(ast::EntityUID::from))
                .collect::<Result<HashSet<_>, _>>()?;
            let attrs = vec![
                ("approval_limit", Value::from(*approval_limit)),
                ("scopes", scope_set(scopes)),
            ];
            let entity = core_entity(me.clone(), attrs, roles);
            Ok((me, entity))
        }
        PrincipalInputs::ServiceAccount { id, scopes } => {
            let me = prepared.uid("ServiceAccount", id)?;
            let attrs = vec![("scopes", scope_set(scopes))];
            let entity = core_entity(me.clone(), attrs, HashSet::new());
            Ok((me, entity))
        }
    }
}

/// An entity of Cedar's core from its uid, attribute values and parents (no tags).
fn core_entity(
    uid: EntityUid,
    attrs: Vec<(&'static str, Value)>,
    parents: HashSet<ast::EntityUID>,
) -> ast::Entity {
    ast::Entity::new_with_attr_partial_value(
        uid.into(),
        attrs
            .into_iter()
            .map(|(name, value)| (name.into(), PartialValue::from(value))),
        HashSet::new(),
        parents,
        [],
    )
}

/// An entity reference as an attribute value.
fn entity_value(uid: EntityUid) -> Value {
    Value::from(ast::EntityUID::from(uid))
}

/// A principal's scopes as a Cedar set of strings.
fn scope_set(scopes: &[String]) -> Value {
    Value::set_of_lits(
        scopes
            .iter()
            .map(|scope| ast::Literal::from(scope.as_str())),
        None,
    )
}
