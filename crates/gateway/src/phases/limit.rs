//! The limit phase: a route's per-principal rate (`rate_limit` in `routes.toml`; a slow drip of
//! bulk reads is an export too). Unlike the brute-force counters, a rate that cannot be counted
//! (the state store unreachable) refuses the request: 503.

use std::time::Duration;

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::gateway::Gateway;

pub(super) async fn phase(
    gateway: &Gateway,
    ctx: &mut RequestContext<'_>,
) -> Result<(), GatewayError> {
    let route = ctx.route()?.route;
    let Some(limit) = route.rate_limit else {
        return Ok(());
    };
    let principal = ctx.principal()?;
    let key = format!("rate:{}:{}:{}", route.method, route.template, principal.id);
    let window = Duration::from_secs(limit.window_s);
    match gateway
        .state
        .limit(&key, limit.requests, window, true)
        .await
    {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(GatewayError::TooManyRequests(
            wait,
            crate::error::Throttle::Rate,
        )),
        Err(error) => Err(GatewayError::FactUnavailable(error.to_string())),
    }
}
