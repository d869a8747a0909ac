//! The authenticate phase: who is asking — a bearer token (JWT, or introspected), an API key or a
//! client certificate (`invoiceguard-authn`) — behind brute-force counters per source address and
//! per subject, then the revocation list (a leaver blocked on every replica). A failure counts
//! against a subject only when it proves the subject (a verified token that failed a later check,
//! an API key's account), so naming someone in a forged token locks out nobody but its sender.

use std::time::Duration;

use invoiceguard_authn::{AuthMethod, Credentials, claimed_subject};
use invoiceguard_telemetry::throttle;
use tracing::Instrument;

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::gateway::Gateway;

pub(super) async fn phase(
    gateway: &Gateway,
    credentials: Credentials<'_>,
    ctx: &mut RequestContext<'_>,
) -> Result<(), GatewayError> {
    // A token verified before is not decoded again for the subject it claims: its verified
    // subject is the same.
    let cached = gateway.authn.cached(&credentials);
    let subject = match &cached {
        Some(principal) if principal.method == AuthMethod::Jwt => Some(principal.id.clone()),
        _ => credentials.authorization.and_then(claimed_subject),
    };
    let counters = Counters::new(gateway, ctx);
    let mut checked = vec![counters.address.clone()];
    checked.extend(subject.as_deref().map(|subject| counters.subject(subject)));
    counters.check(&checked).await?;
    let authenticated = match cached {
        Some(principal) => Ok(principal),
        None => {
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
            if error.counts_toward_lockout() {
                let mut counted = vec![counters.address.clone()];
                counted.extend(error.proven_subject().map(|s| counters.subject(s)));
                counters.count(&counted).await;
            }
            return Err(error.into());
        }
    };
    let revoked = gateway.revocations.check(&principal.id, ctx.now_unix);
    ctx.principal = Some(principal);
    revoked
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

    /// 429 when a counter is past its limit. An unreachable store does not block anyone here.
    async fn check(&self, keys: &[(String, u64)]) -> Result<(), GatewayError> {
        for (key, limit) in keys {
            match self
                .gateway
                .state
                .limit(key, *limit, self.window(), false)
                .await
            {
                Ok(Some(wait)) => return Err(GatewayError::TooManyRequests(wait)),
                Ok(None) => {}
                Err(error) => {
                    if let Some(held_back) = throttle("brute-force counters unavailable") {
                        tracing::warn!(%error, held_back, "brute-force counters unavailable");
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts a failed authentication.
    async fn count(&self, keys: &[(String, u64)]) {
        for (key, limit) in keys {
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
}
