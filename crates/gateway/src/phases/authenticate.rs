//! The authenticate phase: who is asking — a bearer token (JWT, or introspected), an API key or a
//! client certificate (`invoiceguard-authn`), or else a browser session (`browser.rs`) — behind
//! brute-force counters per source address and per subject, then the revocation list (a leaver
//! blocked on every replica), then what the IdP's security events asked of the subject and the
//! role grants in force (`../lifecycle.rs`); a token verified now has its roles compared with the
//! last ones seen (a mover). A failure counts against a subject only when it proves the subject
//! (a verified token that failed a later check, an API key's account), so naming someone in a
//! forged token locks out nobody but its sender; a subject past its limit is refused once its
//! credential has shown who it is. A token is read once: a cached one not at all.

use std::time::Duration;

use invoiceguard_telemetry::throttle;
use tracing::Instrument;

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::gateway::Gateway;

pub(super) async fn phase(
    gateway: &Gateway,
    offered: super::route::Offered<'_>,
    ctx: &mut RequestContext<'_>,
) -> Result<(), GatewayError> {
    let counters = Counters::new(gateway, ctx);
    counters.check(&counters.address).await?;
    if !offered.has_credentials()
        && let Some(sessions) = gateway.sessions.as_deref()
    {
        let principal =
            crate::browser::authenticate(sessions, offered.session_id, offered.headers, ctx)
                .await?;
        let locked = counters.check(&counters.subject(&principal.id)).await;
        let revoked = gateway.revocations.check(&principal.id, ctx.now_unix);
        locked.and(revoked)?;
        return lifecycle(gateway, principal, ctx);
    }
    let credentials = offered.credentials;
    // A token verified before is found in the cache, without decoding it again.
    let mut fresh = false;
    let authenticated = match gateway.authn.cached(&credentials) {
        Some(principal) => Ok(principal),
        None => {
            fresh = true;
            gateway
                .authn
                .authenticate(credentials)
                .instrument(tracing::info_span!("authenticate"))
                .await
        }
    };
    let principal = match authenticated {
        Ok(principal) => principal,
        Err(error) => {
            let counted = error.counts_toward_lockout();
            if let Some(subject) = error.proven_subject() {
                let subject = counters.subject(subject);
                // A subject already locked out: 429, and not counted again.
                counters.check(&subject).await?;
                if counted {
                    counters.count(&subject).await;
                }
            }
            if counted {
                counters.count(&counters.address).await;
            }
            return Err(error.into());
        }
    };
    // A token verified now may show the subject's roles changed at the IdP (a mover); a cached
    // one was compared when it was verified.
    if fresh {
        gateway
            .lifecycle
            .note_roles(&gateway.state, &gateway.audit, &principal)
            .await;
    }
    // A subject locked out by failures that proved it is refused, even with a valid credential;
    // naming someone in a forged token proves nothing and counts only against its sender.
    let locked = counters.check(&counters.subject(&principal.id)).await;
    let revoked = gateway.revocations.check(&principal.id, ctx.now_unix);
    ctx.principal = Some(principal.clone());
    locked.and(revoked)?;
    lifecycle(gateway, principal, ctx)
}

/// What the IdP's security events asked of the subject (a fresh login, a step-up) and the role
/// grants in force, applied to the principal (`lifecycle.rs`): in memory, no state lookup.
fn lifecycle(
    gateway: &Gateway,
    principal: std::sync::Arc<invoiceguard_authn::Principal>,
    ctx: &mut RequestContext<'_>,
) -> Result<(), GatewayError> {
    let applied = gateway.lifecycle.apply(principal, ctx.now_unix)?;
    ctx.principal = Some(applied.principal);
    ctx.grants = applied.grants;
    Ok(())
}

/// The brute-force counters a request is checked against: its source address's, and its
/// subject's when it names one.
struct Counters<'g> {
    gateway: &'g Gateway,
    address: (String, u64),
}

impl<'g> Counters<'g> {
    fn new(gateway: &'g Gateway, ctx: &RequestContext<'_>) -> Self {
        Self {
            gateway,
            address: (
                format!("authfail:ip:{}", ctx.connection.peer.ip()),
                gateway.limits.failed_auth_per_ip,
            ),
        }
    }

    /// The counter of a subject.
    fn subject(&self, subject: &str) -> (String, u64) {
        (
            format!("authfail:sub:{subject}"),
            self.gateway.limits.failed_auth_per_subject,
        )
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.gateway.limits.failed_auth_window_s)
    }

    /// 429 when the counter is past its limit. An unreachable store does not block anyone here.
    async fn check(&self, (key, limit): &(String, u64)) -> Result<(), GatewayError> {
        match self
            .gateway
            .state
            .limit(key, *limit, self.window(), false)
            .await
        {
            Ok(Some(wait)) => Err(GatewayError::TooManyRequests(
                wait,
                crate::error::Throttle::Lockout,
            )),
            Ok(None) => Ok(()),
            Err(error) => {
                if let Some(held_back) = throttle("brute-force counters unavailable") {
                    tracing::warn!(%error, held_back, "brute-force counters unavailable");
                }
                Ok(())
            }
        }
    }

    /// Counts a failed authentication.
    async fn count(&self, (key, limit): &(String, u64)) {
        if let Err(error) = self
            .gateway
            .state
            .limit(key, *limit, self.window(), true)
            .await
            && let Some(held_back) = throttle("failed authentication not counted")
        {
            tracing::warn!(%error, held_back, "failed authentication not counted");
        }
    }
}
