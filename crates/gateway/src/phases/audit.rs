//! The audit phase, before forwarding: the spool must be taking events (its last write
//! succeeded, no event is waiting in memory); a request that may change something has its
//! `authorized` event written first, so a crash while it is forwarded leaves a trace; a sensitive
//! one (`audit.sensitive_actions`) has it on disk (fsync) first. Otherwise 503 — unless
//! `audit.fail_open`, which forwards anyway and says so in the log.

use crate::context::{RequestContext, changes_state};
use crate::error::GatewayError;
use crate::gateway::Gateway;

pub(super) async fn phase(gateway: &Gateway, ctx: &RequestContext<'_>) -> Result<(), GatewayError> {
    let audit = &gateway.audit;
    if !audit.is_writable() && !gateway.audit_fail_open {
        return Err(GatewayError::AuditUnavailable(
            "the audit spool is not taking events".to_owned(),
        ));
    }
    let sensitive = gateway.sensitive.contains(&ctx.route()?.route.action);
    if !sensitive && !changes_state(&ctx.method) {
        return Ok(());
    }
    let event = crate::audit_trail::authorized_event(ctx);
    let recorded = if sensitive {
        audit.record_durable(event).await
    } else {
        audit.record_before_forward(event)
    };
    match recorded {
        Ok(_seq) => Ok(()),
        Err(error) if gateway.audit_fail_open => {
            tracing::error!(%error, "request forwarded without its `authorized` audit event (fail_open)");
            Ok(())
        }
        Err(error) => Err(GatewayError::AuditUnavailable(error.to_string())),
    }
}
