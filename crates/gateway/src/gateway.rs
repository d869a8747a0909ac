//! The gateway: its parts, shared by every connection (authenticator, policies, upstream, audit
//! log, state, revocations), how they start, and what the admin listener and the readiness probe
//! ask of them. A request's way through them is in `request.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use invoiceguard_audit::AuditLog;
use invoiceguard_authn::Authenticator;
use invoiceguard_state::StateStore;
use invoiceguard_telemetry::throttle;

use crate::body::BodyTimes;
use crate::config::{Config, LimitsConfig};
use crate::reload::Policies;
use crate::revocation::Revocations;
use crate::upstream::Upstream;

/// The gateway's parts, shared by every connection.
pub struct Gateway {
    pub(crate) authn: Arc<Authenticator>,
    pub(crate) policies: Arc<Policies>,
    pub(crate) upstream: Upstream,
    pub(crate) audit: std::sync::Arc<AuditLog>,
    pub(crate) state: Arc<StateStore>,
    pub(crate) revocations: Arc<Revocations>,
    pub(crate) limits: LimitsConfig,
    pub(crate) api_key_header: http::HeaderName,
    /// Actions whose `authorized` event must be durable before forwarding.
    pub(crate) sensitive: Vec<String>,
    pub(crate) audit_fail_open: bool,
    /// How long a client may take over its request body.
    pub(crate) body_times: BodyTimes,
    /// The host names answered for (lowercase, IPv6 without brackets); empty: any.
    pub(crate) hosts: Vec<String>,
    /// Requests being handled now (`limits.max_in_flight` at most).
    pub(crate) in_flight: AtomicUsize,
    /// The admin listener's token, replaced when the credentials are reloaded.
    admin_token: crate::admin_token::AdminToken,
    /// Browser sessions, when `[session]` is configured.
    pub(crate) sessions: Option<Arc<invoiceguard_session::Sessions>>,
    /// How long an export request waits for its approval, and an approval for its export.
    pub(crate) approvals_ttl: Duration,
    /// Where new export requests are posted, when configured.
    pub(crate) approvals_webhook: Option<crate::approval_webhook::Webhook>,
    /// What security events asked of subjects, and the role grants in force.
    pub(crate) lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// The IdP's security events, when `[ssf]` is configured.
    pub(crate) ssf: Option<crate::ssf::Receiver>,
}

/// The gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The audit file cannot be opened.
    #[error(transparent)]
    Audit(#[from] invoiceguard_audit::AuditError),
    /// The upstream client cannot be built.
    #[error("{0}")]
    Upstream(String),
    /// The authenticator cannot be built.
    #[error(transparent)]
    Authn(#[from] invoiceguard_authn::AuthnError),
    /// The state store cannot be opened.
    #[error(transparent)]
    State(#[from] invoiceguard_state::StateError),
    /// The admin token cannot be read.
    #[error("{0}")]
    Admin(String),
    /// The session configuration (its client secret), the approvers' webhook or the security
    /// event receiver cannot be used.
    #[error("{0}")]
    Session(String),
    /// `authn.api_key_header` is not a header name (`check` reports it first).
    #[error("authn.api_key_header: `{0}` is not a header name")]
    ApiKeyHeader(String),
}

impl Gateway {
    /// Builds every part: the audit spool must open (the gateway refuses to start without it);
    /// the policies may have problems (the gateway then refuses requests and reports unready
    /// until they are fixed), the IdP may still be down (its keys are fetched in the
    /// background).
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let audit = std::sync::Arc::new(AuditLog::open(&config.audit)?);
        let policies = Arc::new(Policies::load(&config.policy, audit.clone()));
        policies.spawn_watch();
        let api_key_header =
            http::HeaderName::from_bytes(config.authn.api_key_header.as_bytes())
                .map_err(|_| StartError::ApiKeyHeader(config.authn.api_key_header.clone()))?;
        let upstream = Upstream::new(&config.upstream, api_key_header.clone())
            .map_err(StartError::Upstream)?;
        let state = Arc::new(StateStore::open(&config.state)?);
        let revocations = Arc::new(Revocations::default());
        revocations.refresh(&state).await;
        revocations.spawn_sync(state.clone());
        let lifecycle = Arc::new(crate::lifecycle::Lifecycle::default());
        lifecycle.refresh(&state).await;
        lifecycle.spawn_sync(state.clone(), audit.clone());
        let ssf = match &config.ssf {
            Some(ssf) => Some(
                crate::ssf::Receiver::new(
                    ssf,
                    config.authn.leeway_s,
                    Duration::from_millis(config.authn.idp_timeout_ms),
                )
                .map_err(StartError::Session)?,
            ),
            None => None,
        };
        let authn = Authenticator::start(config.authn.clone()).await?;
        authn.spawn_refresh();
        let sessions = match &config.session {
            Some(session) => {
                let default_issuer = config
                    .authn
                    .issuers()
                    .first()
                    .map(|issuer| issuer.issuer.clone())
                    .unwrap_or_default();
                Some(Arc::new(
                    invoiceguard_session::Sessions::new(
                        session.clone(),
                        &default_issuer,
                        config.authn.mfa_acr.first().cloned(),
                        authn.clone(),
                        state.clone(),
                    )
                    .map_err(StartError::Session)?,
                ))
            }
            None => None,
        };
        Ok(Self {
            sessions,
            lifecycle,
            ssf,
            approvals_ttl: Duration::from_secs(config.approvals.ttl_s),
            approvals_webhook: match &config.approvals.webhook {
                Some(url) => Some(
                    crate::approval_webhook::Webhook::new(
                        url,
                        config.approvals.webhook_auth_header_file.clone(),
                    )
                    .map_err(StartError::Session)?,
                ),
                None => None,
            },
            authn,
            policies,
            upstream,
            audit,
            state,
            revocations,
            limits: config.limits.clone(),
            api_key_header,
            sensitive: config.audit.sensitive_actions.clone(),
            audit_fail_open: config.audit.fail_open,
            body_times: BodyTimes {
                pause: Duration::from_millis(config.listen.body_timeout_ms),
                deadline: Duration::from_millis(config.body_deadline_ms()),
            },
            hosts: config
                .listen
                .hosts
                .iter()
                .map(|host| crate::canonical_path::bare_host(host).to_ascii_lowercase())
                .collect(),
            in_flight: AtomicUsize::new(0),
            admin_token: crate::admin_token::AdminToken::load(config.admin.token_file.as_deref())
                .map_err(StartError::Admin)?,
        })
    }

    /// The audit log.
    pub(crate) fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The authenticator.
    pub(crate) fn authn(&self) -> &Authenticator {
        &self.authn
    }

    /// The admin listener's token in force.
    pub(crate) fn admin_token(&self) -> &crate::admin_token::AdminToken {
        &self.admin_token
    }

    /// Export requests and their approvals (four eyes).
    pub(crate) fn approvals(&self) -> crate::approvals::Approvals<'_> {
        crate::approvals::Approvals {
            state: &self.state,
            ttl: self.approvals_ttl,
        }
    }

    /// The state store.
    pub(crate) fn state(&self) -> &StateStore {
        &self.state
    }

    /// Whether the gateway can serve: policies loaded, every IdP's keys fetched, the state store
    /// answering, the audit spool taking events; and the details.
    pub(crate) async fn readiness(&self) -> (bool, serde_json::Value) {
        let policies_loaded = self.policies.current().is_some();
        let idp_keys = self.authn.is_ready();
        let state = self.state.ping().await;
        let revocations_loaded = self.revocations.is_loaded();
        let ready = policies_loaded
            && idp_keys
            && state.is_ok()
            && revocations_loaded
            && self.audit.is_writable();
        let report = serde_json::json!({
            "ready": ready,
            "policies_loaded": policies_loaded,
            "policy_version": self.policies.version(),
            "policy_reloads_refused": self.policies.refused.load(std::sync::atomic::Ordering::Relaxed),
            "idp_keys": idp_keys,
            "audit": {"spool": self.audit.dir(), "writable": self.audit.is_writable(), "last_seq": self.audit.last_seq()},
            "state": {"backend": self.state.backend(), "reachable": state.is_ok(), "revocations_loaded": revocations_loaded, "errors_total": self.state.errors()},
            "ssf": self.ssf.as_ref().map(crate::ssf::Receiver::report),
        });
        (ready, report)
    }

    /// Revokes a subject on every replica (the admin listener records it in the audit trail).
    pub(crate) async fn revoke(
        &self,
        subject: &str,
        until_unix: u64,
    ) -> Result<(), invoiceguard_state::StateError> {
        self.state.revoke(subject, until_unix).await?;
        self.revocations.refresh(&self.state).await;
        Ok(())
    }

    /// Ends every browser session of a subject (a revocation ends them too): how many.
    pub(crate) async fn end_sessions(&self, subject: &str) -> Result<usize, String> {
        match &self.sessions {
            Some(sessions) => sessions
                .end_subject(subject)
                .await
                .map_err(|error| error.to_string()),
            None => Ok(0),
        }
    }

    /// Lifts a revocation on every replica: `Ok(false)` when the subject was not revoked.
    pub(crate) async fn lift(&self, subject: &str) -> Result<bool, invoiceguard_state::StateError> {
        if !self.state.revocations().await?.contains_key(subject) {
            return Ok(false);
        }
        self.state.lift(subject).await?;
        self.revocations.refresh(&self.state).await;
        Ok(true)
    }

    /// Records a request the HTTP layer refused before it reached the phases.
    pub(crate) fn record_malformed(&self, peer: SocketAddr, status: u16, detail: &str) {
        let event =
            crate::audit_trail::malformed_event(peer, status, detail, &self.policies.version());
        if let Err(error) = self.audit.record_refusal(event)
            && let Some(held_back) = throttle("audit event of a malformed request not written")
        {
            tracing::error!(%error, held_back, "audit event of a malformed request not written");
        }
    }

    /// Records a request to the revocation endpoints.
    pub(crate) fn record_admin(&self, act: crate::audit_trail::AdminAct<'_>) {
        let event = crate::audit_trail::admin_event(act, &self.policies.version());
        if let Err(error) = self.audit.record(event) {
            tracing::error!(%error, "audit event of an admin request not written");
        }
    }
}
