//! One request, phase by phase: normalize → route → authenticate → authorize → forward, and its
//! audit event whatever happens.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use invoiceguard_audit::AuditLog;
use invoiceguard_authn::Authenticator;
use invoiceguard_policy::{PolicyEngine, RequestFacts};

use crate::audit_trail::Trail;
use crate::config::Config;
use crate::error::{GatewayError, ResponseBody};
use crate::forward::{ForwardContext, REQUEST_ID, Upstream};
use crate::normalize;

/// The gateway's parts, shared by every connection.
pub struct Gateway {
    authn: Arc<Authenticator>,
    policy: Arc<PolicyEngine>,
    upstream: Upstream,
    audit: AuditLog,
    tls: bool,
}

/// The gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policy folder has problems.
    #[error("the policy folder has problems:\n{}", .0.0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Policy(#[from] invoiceguard_policy::LoadError),
    /// The audit file cannot be opened.
    #[error(transparent)]
    Audit(#[from] invoiceguard_audit::AuditError),
    /// The upstream client cannot be built.
    #[error("{0}")]
    Upstream(String),
    /// The authenticator cannot be built.
    #[error(transparent)]
    Authn(#[from] invoiceguard_authn::AuthnError),
}

impl Gateway {
    /// Builds every part: the audit log and policies must load (the gateway refuses to start
    /// without them); the IdP may still be down (its keys are fetched in the background).
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let audit = AuditLog::open(&config.audit)?;
        let policy = Arc::new(PolicyEngine::load(&config.policy)?);
        tracing::info!(
            version = policy.version(),
            policies = policy.policy_count(),
            routes = policy.routes().routes().len(),
            "policies loaded"
        );
        let upstream = Upstream::new(&config.upstream).map_err(StartError::Upstream)?;
        let authn = Authenticator::start(config.authn.clone()).await?;
        authn.spawn_refresh();
        Ok(Self {
            authn,
            policy,
            upstream,
            audit,
            tls: config.listen.tls.is_some(),
        })
    }

    /// Handles one request and writes its audit event. Never fails: every error becomes its
    /// problem response.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ResponseBody> {
        let mut trail = Trail::start(
            request.method(),
            request.uri().path(),
            request.version(),
            request.headers(),
            peer,
        );
        let request_id = trail.request_id.clone();
        let (mut response, upstream_status, error) =
            match self.phases(request, peer, &mut trail).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (response.map(|body| body.boxed()), Some(status), None)
                }
                Err(error) => {
                    if error.side() == crate::error::Side::Client {
                        tracing::debug!(%request_id, %error, "request refused");
                    } else {
                        tracing::warn!(%request_id, %error, "request failed");
                    }
                    (error.to_response(&request_id), None, Some(error))
                }
            };
        let event = trail.finish(
            response.status().as_u16(),
            upstream_status,
            error.as_ref(),
            self.policy.version(),
        );
        if let Err(error) = self.audit.record(event) {
            tracing::error!(%request_id, %error, "audit event not written");
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        response
    }

    async fn phases(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        trail: &mut Trail,
    ) -> Result<Response<Incoming>, GatewayError> {
        // normalize
        let path = normalize::request(request.method(), request.uri().path(), request.headers())
            .map_err(GatewayError::BadRequest)?;
        trail.normalized(&path.path);

        // route
        let authorization = request.headers().get(header::AUTHORIZATION);
        let Some(route) = self
            .policy
            .routes()
            .find(request.method().as_str(), &path.segments)
        else {
            // Default deny; the caller is still recorded when a valid token names them.
            if let Ok(principal) = self.authn.authenticate(authorization).await {
                trail.authenticated(&principal);
            }
            return Err(GatewayError::NoRoute);
        };
        trail.routed(&route);

        // authenticate
        let principal = self.authn.authenticate(authorization).await?;
        trail.authenticated(&principal);

        // authorize
        let facts = RequestFacts {
            source_ip: peer.ip(),
        };
        let decision = self.policy.authorize(&principal, &route, &facts);
        let allowed = decision.is_allowed();
        trail.decided(decision);
        if !allowed {
            return Err(GatewayError::Forbidden);
        }

        // forward
        let context = ForwardContext {
            principal: &principal,
            request_id: &trail.request_id,
            client_ip: peer.ip(),
            tls: self.tls,
        };
        self.upstream.send(request, &path.path, &context).await
    }
}
