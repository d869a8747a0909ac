//! The request pipeline: the phases one request goes through, in order, each in its own file
//! here and each over the request's context (`context.rs`). A phase either fills in the context
//! and lets the request go on, or ends it with a [`GatewayError`] (its problem answer). Whatever
//! ended it, the request's audit event is written from the context afterwards
//! (`request.rs`, `audit_trail.rs`).
//!
//! | phase | file | decides | refuses with |
//! |---|---|---|---|
//! | normalize | `normalize.rs` | the canonical path, the host, the declared size, a break-glass reason | 400, 413, 421 |
//! | (own) | `../own/` | a gateway-owned endpoint (`/.invoiceguard/…`) answers instead of a route | 400, 401, 403 |
//! | route | `route.rs` | the route and resource (default deny), the credentials offered | 400, 403 |
//! | authenticate | `authenticate.rs` | the principal (a credential, or a browser session: `../browser.rs`), behind brute-force counters; revoked subjects | 302 to log in, 401, 403, 429 |
//! | limit | `limit.rs` | the route's per-principal rate | 429, 503 |
//! | enrich | `enrich.rs` | resource facts, an export's rows reserved | 400, 408, 503 |
//! | authorize | `authorize.rs` | the Cedar decision (and a shadow set's); an export's approval spent, or an export request recorded (`../approvals.rs`) | 401 step-up (302 to log in again for a browser), 403, 403 approval-required, 404 |
//! | audit | `audit.rs` | the `authorized` event before a change is forwarded | 503 |
//! | forward | `forward.rs` | the upstream's answer | 502, 504, 408 |
//! | settle | `settle.rs` | what the answer proves (a created invoice's creator, exported rows) | — |

mod audit;
mod authenticate;
mod authorize;
mod enrich;
mod forward;
mod limit;
mod normalize;
mod route;
mod settle;
#[cfg(test)]
mod tests;

use http::{Request, Response};

use crate::body::ClientBody;
use crate::context::RequestContext;
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::Gateway;

/// Runs a request through the phases. An export's reserved rows are given back whenever a phase
/// after the reservation ends the request; the settle phase charges what was exported.
pub(crate) async fn run<B: ClientBody>(
    gateway: &Gateway,
    request: Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<Response<ResponseBody>, GatewayError> {
    normalize::phase(gateway, &request, ctx)?;
    if ctx.path()?.path.starts_with(crate::own::PREFIX) {
        return crate::own::handle(gateway, request, ctx).await;
    }
    let offered = route::phase(gateway, &request, ctx).await?;
    authenticate::phase(gateway, offered, ctx).await?;
    limit::phase(gateway, ctx).await?;
    let request = enrich::phase(gateway, request, ctx).await?;
    let forwarded = async {
        authorize::phase(gateway, ctx)?;
        spend_approval(gateway, ctx).await?;
        audit::phase(gateway, ctx).await?;
        forward::phase(gateway, request, ctx).await
    }
    .await;
    match forwarded {
        Ok(response) => settle::phase(gateway, response, ctx).await,
        Err(refusal) => {
            if let Some(held) = ctx.reservation.take() {
                held.release().await;
            }
            let refusal = match refusal {
                GatewayError::ApprovalRequired(None) => request_approval(gateway, ctx).await,
                other => other,
            };
            Err(crate::browser::step_up(gateway.sessions.as_deref(), ctx, refusal).await)
        }
    }
}

/// Authenticates a request to one of the gateway's own endpoints that acts for a person (export
/// approvals) exactly as the authenticate phase does for a route: its credential or session,
/// behind the same brute-force counters and revocations.
pub(crate) async fn authenticate_own<B>(
    gateway: &Gateway,
    request: &Request<B>,
    ctx: &mut RequestContext<'_>,
) -> Result<std::sync::Arc<invoiceguard_authn::Principal>, GatewayError> {
    let connection = ctx.connection;
    let offered = route::offered(gateway, request, connection)?;
    authenticate::phase(gateway, offered, ctx).await?;
    ctx.principal().cloned()
}

/// Spends the approval an allowed export was decided with: once, on any replica. Another
/// request that spent it first leaves this one needing an approval of its own.
async fn spend_approval(
    gateway: &Gateway,
    ctx: &mut RequestContext<'_>,
) -> Result<(), GatewayError> {
    let Some(approval) = &ctx.approval else {
        return Ok(());
    };
    if gateway.approvals().spend(approval).await? {
        Ok(())
    } else {
        ctx.approval = None;
        Err(request_approval(gateway, ctx).await)
    }
}

/// Records an export request for another person to approve: the refusal, with its id.
async fn request_approval(gateway: &Gateway, ctx: &RequestContext<'_>) -> GatewayError {
    match gateway.approvals().request(ctx).await {
        Ok(request) => {
            if let Some(webhook) = &gateway.approvals_webhook {
                webhook.notify(&request);
            }
            GatewayError::ApprovalRequired(Some(request.id))
        }
        Err(error) => error,
    }
}
