//! The authorize phase: the Cedar decision over the principal, the route's action and resource,
//! and the facts (`invoiceguard-policy`); a shadow policy set's decision beside it, recorded when
//! it differs. A policy may ask for a fresh MFA login instead (401 step-up, users only); a
//! resource the upstream does not know is told only to a caller the policies allow (404).

use invoiceguard_authn::PrincipalKind;
use invoiceguard_policy::{Decision, Effect, RequestFacts};

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::gateway::Gateway;

pub(super) fn phase(gateway: &Gateway, ctx: &mut RequestContext<'_>) -> Result<(), GatewayError> {
    let facts = RequestFacts {
        source_ip: ctx.connection.peer.ip(),
        now_unix: ctx.now_unix,
        resource: std::mem::take(&mut ctx.resource),
        export: std::mem::take(&mut ctx.export),
        break_glass_reason: ctx.break_glass.clone(),
        user_scopes_enforced: gateway.authn.config().enforce_user_scopes,
    };
    let (route, principal) = (ctx.route()?, ctx.principal()?);
    let decision = {
        let _span = tracing::info_span!("authorize", action = %route.route.action).entered();
        let started = std::time::Instant::now();
        let decision = ctx.policy()?.authorize(principal, route, &facts);
        invoiceguard_telemetry::metrics()
            .policy_evaluation
            .observe(started.elapsed().as_secs_f64());
        decision
    };
    let segments = &ctx.path()?.segments;
    let shadow = gateway.policies.shadow().and_then(|shadow| {
        let method = route.route.method.as_str();
        let decided = match shadow.routes().find(method, segments) {
            Some(shadow_route) => shadow.authorize(principal, &shadow_route, &facts),
            None => Decision {
                effect: Effect::Deny,
                policies: Vec::new(),
                errors: vec!["no route".to_owned()],
                step_up: None,
                approval_required: false,
            },
        };
        crate::audit_trail::shadow_record(Some(&decision), &decided, shadow.version())
    });
    let allowed = decision.is_allowed();
    let user = principal.kind == PrincipalKind::User;
    let step_up = decision.step_up.filter(|_| user);
    let approval_required = decision.approval_required && user;
    ctx.decision = Some(decision);
    ctx.scopes_enforced = facts.user_scopes_enforced;
    ctx.shadow = shadow;
    ctx.resource = facts.resource;
    ctx.export = facts.export;
    match (step_up, allowed) {
        (Some(step_up), _) => Err(GatewayError::StepUpRequired(step_up)),
        (None, false) if approval_required => Err(GatewayError::ApprovalRequired(None)),
        (None, false) => Err(GatewayError::Forbidden),
        (None, true) if ctx.resource_missing => Err(GatewayError::NotFound),
        (None, true) => Ok(()),
    }
}
