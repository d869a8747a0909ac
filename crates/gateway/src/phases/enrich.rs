//! The enrich phase: facts one request cannot carry — who created the invoice and its amount
//! (segregation of duties, approval limits), and the export quota (reserved before the decision).
//! A fact that a route needs and cannot be had fails the route closed (503).

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use invoiceguard_authn::Principal;
use invoiceguard_policy::{
    ExportFacts, ExportSpec, Fact, Limits, ResourceFacts, RouteMatch, RouteTable,
};
use invoiceguard_state::{ExportLimits, Reservation, ReserveOutcome, StateStore};
use serde_json::Value;

use crate::body::{BodyError, ClientBody, GuardedBody};
use crate::context::RequestContext;
use crate::error::{GatewayError, RequestBody};
use crate::form_override::FormScan;
use crate::gateway::Gateway;
use crate::reservation::HeldExport;
use crate::upstream::Upstream;

/// The largest export request body read (to find the rows it asks for).
const MAX_EXPORT_REQUEST_BYTES: usize = 64 * 1024;

/// Gathers the facts, and returns the request with its body guarded (size, pauses, deadline,
/// method-override fields) — read whole first for an export, whose rows it may name.
pub(super) async fn phase<B: ClientBody>(
    gateway: &Gateway,
    request: Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<Request<RequestBody>, GatewayError> {
    let route = ctx.route()?;
    // A resource the upstream does not know is decided without facts: only a caller the
    // policies allow learns that it does not exist (no existence oracle for the others).
    let routes = ctx.policy()?.routes();
    match resource_facts(
        route,
        routes,
        &gateway.state,
        &gateway.upstream,
        &ctx.request_id,
    )
    .await
    {
        Ok(resource) => ctx.resource = resource,
        Err(GatewayError::NotFound) => ctx.resource_missing = true,
        Err(error) => return Err(error),
    }
    let (parts, body) = request.into_parts();
    let form = FormScan::for_request(&parts.headers);
    let limits = &gateway.limits;
    let body = GuardedBody::new(body, limits.max_body_bytes, gateway.body_times, form);
    let Some(spec) = &ctx.route()?.route.export else {
        return Ok(Request::from_parts(parts, body.boxed()));
    };
    let bytes = Limited::new(body, MAX_EXPORT_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|error| match BodyError::find(&*error) {
            Some(BodyError::Timeout(ms)) => GatewayError::BodyTimeout(*ms),
            Some(BodyError::Deadline(ms)) => GatewayError::BodyTooSlow(*ms),
            Some(error @ BodyError::MethodOverride(_)) => {
                GatewayError::BadRequest(error.to_string())
            }
            _ => GatewayError::BadRequest(format!("export request body: {error}")),
        })?
        .to_bytes();
    let requested = requested_rows(spec, &bytes);
    let principal = ctx.principal()?;
    let quota = ctx.policy()?.limits(principal);
    let (facts, reservation) = reserve_export(&gateway.state, principal, quota, requested).await?;
    ctx.export = facts;
    ctx.reservation = reservation.map(|r| HeldExport::new(r, gateway.state.clone()));
    let body = Full::new(bytes).map_err(|never| match never {}).boxed();
    Ok(Request::from_parts(parts, body))
}

/// The facts about the route's resource that its decision needs.
pub(crate) async fn resource_facts(
    route: &RouteMatch<'_>,
    routes: &RouteTable,
    state: &StateStore,
    upstream: &Upstream,
    request_id: &str,
) -> Result<ResourceFacts, GatewayError> {
    let needed = &route.route.facts;
    if needed.is_empty() {
        return Ok(ResourceFacts::default());
    }
    let id = &route.resource_id;
    let mut facts = ResourceFacts {
        creator: state
            .owner(id)
            .await
            .map_err(|e| GatewayError::FactUnavailable(e.to_string()))?,
        ..ResourceFacts::default()
    };
    let missing_creator = needed.contains(&Fact::Creator) && facts.creator.is_none();
    if !missing_creator && needed.iter().all(|fact| *fact == Fact::Creator) {
        return Ok(facts);
    }
    let kind = &route.route.resource_type;
    let lookup = routes
        .lookup(kind)
        .ok_or_else(|| GatewayError::FactUnavailable(format!("no lookup for `{kind}`")))?;
    let path = lookup
        .path
        .replace("{id}", &crate::canonical_path::encode_segment(id));
    // Boxed: a lookup is an upstream call of its own, on the few routes that need one; every
    // other request's future stays without room for it.
    let answer = Box::pin(upstream.lookup(&path, request_id))
        .await
        .map_err(|e| GatewayError::FactUnavailable(format!("lookup of `{kind}` `{id}`: {e}")))?
        .ok_or(GatewayError::NotFound)?;
    let text = |pointer: &Option<String>| {
        pointer
            .as_deref()
            .and_then(|pointer| answer.pointer(pointer))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if missing_creator {
        facts.creator = text(&lookup.creator);
    }
    facts.amount = lookup
        .amount
        .as_deref()
        .and_then(|pointer| answer.pointer(pointer))
        .and_then(Value::as_f64)
        .filter(|amount| amount.is_finite())
        .map(|amount| amount.ceil() as i64);
    facts.currency = text(&lookup.currency);
    facts.status = text(&lookup.status);
    facts.company = text(&lookup.company);
    let known = |fact: &Fact| match fact {
        Fact::Creator => facts.creator.is_some(),
        Fact::Amount => facts.amount.is_some(),
        Fact::Currency => facts.currency.is_some(),
        Fact::Status => facts.status.is_some(),
        Fact::Company => facts.company.is_some(),
    };
    if let Some(missing) = needed.iter().find(|fact| !known(fact)) {
        return Err(GatewayError::FactUnavailable(format!(
            "the upstream's `{kind}` `{id}` does not say its {missing:?}"
        )));
    }
    Ok(facts)
}

/// Rows an export asks for: the number at the route's JSON pointer in the request body, if any.
pub(crate) fn requested_rows(spec: &ExportSpec, body: &Bytes) -> Option<u64> {
    let pointer = spec.requested.as_deref()?;
    let json: Value = serde_json::from_slice(body).ok()?;
    json.pointer(pointer)?.as_u64()
}

/// Reserves the export's rows in the principal's daily quota. A request that does not say how
/// many rows it wants reserves everything left.
pub(crate) async fn reserve_export(
    state: &StateStore,
    principal: &Principal,
    limits: Limits,
    requested: Option<u64>,
) -> Result<(ExportFacts, Option<Reservation>), GatewayError> {
    let quota = ExportLimits {
        rows_per_day: limits.export_rows_per_day,
        exports_per_day: limits.exports_per_day,
    };
    let outcome = state
        .reserve_export(&principal.id, requested, quota)
        .await
        .map_err(|e| GatewayError::FactUnavailable(e.to_string()))?;
    Ok(match outcome {
        ReserveOutcome::Reserved(reservation) => (
            ExportFacts {
                rows_requested: reservation.rows,
                within_limits: true,
            },
            Some(reservation),
        ),
        ReserveOutcome::OverLimit { rows_used, .. } => {
            let rows = requested.unwrap_or_else(|| quota.rows_per_day.saturating_sub(rows_used));
            (
                ExportFacts {
                    rows_requested: rows,
                    within_limits: false,
                },
                None,
            )
        }
    })
}
