//! The enrich phase: facts one request cannot carry — who created the invoice and its amount
//! (segregation of duties, approval limits), and the export quota (reserved before the decision).
//! A fact that a route needs and cannot be had fails the route closed (503).

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use invoiceguard_authn::{Principal, PrincipalKind};
use invoiceguard_policy::{
    ExportFacts, ExportSpec, Fact, Limits, Requested, ResourceFacts, RouteMatch, RouteTable,
};
use invoiceguard_state::{ExportLimits, Reservation, ReserveOutcome, StateStore};
use serde_json::Value;

use crate::approvals::ExportDefinition;
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
    let requested = requested_rows(spec, parts.uri.query(), &bytes)?;
    let principal = ctx.principal()?;
    let quota = ctx.policy()?.limits(principal);
    let (mut facts, reservation) =
        reserve_export(&gateway.state, principal, quota, requested).await?;
    // Four eyes: another person's approval of this very export, when there is one.
    let definition = ExportDefinition::new(
        parts.method.as_str(),
        &ctx.path()?.path,
        parts.uri.query(),
        &bytes,
    );
    if principal.kind == PrincipalKind::User
        && let Some(approval) = gateway
            .approvals()
            .find(&principal.id, &definition, facts.rows_requested)
            .await?
    {
        facts.approved = true;
        ctx.approval = Some(approval);
    }
    ctx.export_definition = Some(definition);
    ctx.export_reason = export_reason(&parts.headers);
    ctx.export = facts;
    ctx.reservation = reservation.map(|r| HeldExport::new(r, gateway.state.clone()));
    let body = Full::new(bytes).map_err(|never| match never {}).boxed();
    Ok(Request::from_parts(parts, body))
}

/// The reason an export's requester gives in `X-Export-Reason` (printable, at most 256 bytes;
/// anything else is ignored), kept with an export request for its approver.
fn export_reason(headers: &http::HeaderMap) -> Option<String> {
    let reason = headers.get("x-export-reason")?.to_str().ok()?.trim();
    (!reason.is_empty() && reason.len() <= 256 && !reason.chars().any(char::is_control))
        .then(|| reason.to_owned())
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

/// Rows an export asks for, where its route says to look: `None` when the request does not say
/// (the whole remaining quota is then reserved). A query parameter must appear at most once and
/// be a plain base-10 number from 1 to the route's `max_rows` — no sign, exponent, leading zero
/// or other text — or the request is refused (400) before any decision: the upstream must never
/// read a size the gateway did not. A number in the body is held to the same range.
pub(crate) fn requested_rows(
    spec: &ExportSpec,
    query: Option<&str>,
    body: &Bytes,
) -> Result<Option<u64>, GatewayError> {
    let out_of_range = |name: &str| {
        GatewayError::BadRequest(format!(
            "`{name}` must be a whole number from 1 to {}",
            spec.max_rows
        ))
    };
    match &spec.requested {
        None => Ok(None),
        Some(Requested::Body(pointer)) => {
            let Ok(json) = serde_json::from_slice::<Value>(body) else {
                return Ok(None);
            };
            match json.pointer(pointer).and_then(Value::as_u64) {
                Some(rows) if (1..=spec.max_rows).contains(&rows) => Ok(Some(rows)),
                Some(_) => Err(out_of_range(pointer)),
                None => Ok(None),
            }
        }
        Some(Requested::Query(name)) => {
            let mut values = form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .filter(|(key, _)| key == name)
                .map(|(_, value)| value);
            let Some(value) = values.next() else {
                return Ok(None);
            };
            if values.next().is_some() {
                return Err(GatewayError::BadRequest(format!(
                    "query parameter `{name}` given more than once"
                )));
            }
            strict_count(&value)
                .filter(|rows| (1..=spec.max_rows).contains(rows))
                .map(Some)
                .ok_or_else(|| out_of_range(name))
        }
    }
}

/// A count written plainly: 1 to 19 ASCII digits, no leading zero.
fn strict_count(text: &str) -> Option<u64> {
    let plain = (1..=19).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
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
                approved: false,
            },
            Some(reservation),
        ),
        ReserveOutcome::OverLimit { rows_used, .. } => {
            let rows = requested.unwrap_or_else(|| quota.rows_per_day.saturating_sub(rows_used));
            (
                ExportFacts {
                    rows_requested: rows,
                    within_limits: false,
                    approved: false,
                },
                None,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use invoiceguard_policy::RowCount;

    fn spec(requested: Requested) -> ExportSpec {
        ExportSpec {
            requested: Some(requested),
            max_rows: 1000,
            rows: RowCount::Csv,
            watermark: None,
        }
    }

    fn by_query(query: &str) -> Result<Option<u64>, String> {
        requested_rows(
            &spec(Requested::Query("limit".into())),
            Some(query),
            &Bytes::new(),
        )
        .map_err(|e| e.audit_detail().unwrap_or_default())
    }

    #[test]
    fn a_query_size_is_one_plain_number_in_range() {
        assert_eq!(by_query("limit=10"), Ok(Some(10)));
        assert_eq!(by_query("format=csv&limit=1000"), Ok(Some(1000)));
        // Encoded as the upstream will decode it.
        assert_eq!(by_query("l%69mit=%31%32"), Ok(Some(12)));
        assert_eq!(by_query("format=csv"), Ok(None));
        assert_eq!(by_query(""), Ok(None));
        for bad in [
            "limit=1e9",
            "limit=-1",
            "limit=%2B5",
            "limit=abc",
            "limit=",
            "limit",
            "limit=0",
            "limit=007",
            "limit=1001",
            "limit=10.0",
            "limit=%2010",
            "limit=99999999999999999999",
        ] {
            assert!(
                by_query(bad).is_err_and(|e| e.contains("whole number from 1 to 1000")),
                "{bad}"
            );
        }
        for twice in ["limit=10&limit=100000", "limit=10&l%69mit=10"] {
            assert!(
                by_query(twice).is_err_and(|e| e.contains("more than once")),
                "{twice}"
            );
        }
    }

    #[test]
    fn a_body_size_is_held_to_the_same_range() {
        let body = |text: &'static str| {
            requested_rows(
                &spec(Requested::Body("/limit".into())),
                None,
                &Bytes::from(text),
            )
        };
        assert_eq!(body(r#"{"limit": 10}"#).ok(), Some(Some(10)));
        assert!(body(r#"{"limit": 0}"#).is_err());
        assert!(body(r#"{"limit": 5000}"#).is_err());
        // Not a count: the whole remaining quota is reserved, as before.
        assert_eq!(body(r#"{"limit": "10"}"#).ok(), Some(None));
        assert_eq!(body("not json").ok(), Some(None));
    }
}
