//! The forward phase: the allowed request goes to the upstream (`upstream.rs`) at its canonical
//! path, with the verified identity added and every client-sent copy of it removed.

use http::{Request, Response};
use tracing::Instrument;

use crate::context::RequestContext;
use crate::error::{GatewayError, RequestBody};
use crate::gateway::Gateway;
use crate::upstream::ForwardContext;
use crate::upstream_pool::PooledBody;

pub(super) async fn phase(
    gateway: &Gateway,
    request: Request<RequestBody>,
    ctx: &RequestContext<'_>,
) -> Result<Response<PooledBody>, GatewayError> {
    let path = ctx.path()?;
    let context = ForwardContext {
        principal: ctx.principal()?,
        request_id: &ctx.request_id,
        trace: &ctx.trace,
        client_ip: ctx.connection.peer.ip(),
        tls: ctx.connection.tls,
    };
    gateway
        .upstream
        .send(request, &path.path, &context)
        .instrument(tracing::info_span!("forward"))
        .await
}
