//! Builds the Cedar request for one HTTP request: principal and its entities, action, resource and
//! context.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
    Schema,
};
use invoiceguard_authn::{Principal, PrincipalKind};

use crate::routes::RouteMatch;

/// Facts about the request that come from the connection and the clock rather than the token.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// The client's address.
    pub source_ip: IpAddr,
    /// The time of the request, Unix seconds.
    pub now_unix: u64,
}

/// A Cedar request and the entities it is evaluated against.
pub(crate) struct CedarRequest {
    pub(crate) request: Request,
    pub(crate) entities: Entities,
}

pub(crate) fn uid(entity_type: &str, id: &str) -> Result<EntityUid, String> {
    let name = EntityTypeName::from_str(entity_type)
        .map_err(|e| format!("`{entity_type}` is not an entity type name: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
}

/// Builds the request; a failure means the request does not fit the schema (the caller denies).
pub(crate) fn build(
    schema: &Schema,
    principal: &Principal,
    route: &RouteMatch<'_>,
    facts: &RequestFacts,
) -> Result<CedarRequest, String> {
    let (principal_uid, principal_entity, roles) = principal_entity(principal)?;
    let action = uid("Action", &route.route.action)?;
    let resource = uid(&route.route.resource_type, &route.resource_id)?;
    let context = Context::from_pairs([
        (
            "mfa".to_owned(),
            RestrictedExpression::new_bool(principal.mfa),
        ),
        (
            "interactive".to_owned(),
            RestrictedExpression::new_bool(principal.kind == PrincipalKind::User),
        ),
        (
            "source_ip".to_owned(),
            RestrictedExpression::new_ip(facts.source_ip.to_string()),
        ),
        (
            "acr".to_owned(),
            RestrictedExpression::new_string(principal.acr.clone().unwrap_or_default()),
        ),
        (
            "auth_age_s".to_owned(),
            RestrictedExpression::new_long(
                principal
                    .auth_age_s(facts.now_unix)
                    .and_then(|age| i64::try_from(age).ok())
                    .unwrap_or(i64::MAX),
            ),
        ),
    ])
    .map_err(|e| e.to_string())?;
    let request = Request::new(
        principal_uid,
        action,
        resource.clone(),
        context,
        Some(schema),
    )
    .map_err(|e| e.to_string())?;
    let resource_entity = Entity::new_no_attrs(resource, HashSet::new());
    let entities = Entities::from_entities(
        roles.into_iter().chain([principal_entity, resource_entity]),
        Some(schema),
    )
    .map_err(|e| e.to_string())?;
    Ok(CedarRequest { request, entities })
}

/// The principal's entity, and the role entities it is a member of.
fn principal_entity(principal: &Principal) -> Result<(EntityUid, Entity, Vec<Entity>), String> {
    match principal.kind {
        PrincipalKind::User => {
            let me = uid("User", &principal.id)?;
            let roles = principal
                .roles
                .iter()
                .map(|role| uid("Role", role))
                .collect::<Result<HashSet<_>, _>>()?;
            let role_entities = roles
                .iter()
                .map(|role| Entity::new_no_attrs(role.clone(), HashSet::new()))
                .collect();
            Ok((me.clone(), Entity::new_no_attrs(me, roles), role_entities))
        }
        PrincipalKind::ServiceAccount => {
            let me = uid("ServiceAccount", &principal.id)?;
            let scopes = RestrictedExpression::new_set(
                principal
                    .scopes
                    .iter()
                    .map(|scope| RestrictedExpression::new_string(scope.clone())),
            );
            let entity = Entity::new(
                me.clone(),
                HashMap::from([("scopes".to_owned(), scopes)]),
                HashSet::new(),
            )
            .map_err(|e| e.to_string())?;
            Ok((me, entity, Vec::new()))
        }
    }
}
