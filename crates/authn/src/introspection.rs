//! RFC 7662 token introspection for opaque tokens.

use serde_json::{Map, Value};

use crate::config::Secret;
use crate::error::AuthnError;
use crate::idp_client::IdpClient;

/// Asks the IdP about opaque tokens.
pub(crate) struct Introspector {
    client: IdpClient,
    client_id: String,
    /// The client secret; replaced in place when the configuration's credentials are reloaded.
    secret: std::sync::RwLock<Secret>,
    /// Configured endpoint; otherwise discovery's.
    endpoint: Option<String>,
}

impl Introspector {
    pub(crate) fn new(
        client: IdpClient,
        client_id: String,
        secret: Secret,
        endpoint: Option<String>,
    ) -> Self {
        Self {
            client,
            client_id,
            secret: std::sync::RwLock::new(secret),
            endpoint,
        }
    }

    /// Replaces the client secret (a rotation); whether it changed.
    pub(crate) fn replace_secret(&self, secret: Secret) -> bool {
        let mut current = self.secret.write().unwrap_or_else(|p| p.into_inner());
        let changed = current.expose() != secret.expose();
        *current = secret;
        changed
    }

    /// The token's claims when the IdP says it is active. An inactive token is the caller's
    /// problem (401); an IdP that cannot answer is unavailability (503).
    pub(crate) async fn introspect(
        &self,
        token: &str,
        discovered: Option<String>,
    ) -> Result<Map<String, Value>, AuthnError> {
        let endpoint = self.endpoint.clone().or(discovered).ok_or_else(|| {
            AuthnError::IntrospectionUnavailable("no introspection endpoint is known".to_owned())
        })?;
        let secret = self
            .secret
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .expose()
            .to_owned();
        let answer: Map<String, Value> = self
            .client
            .post_form_json(
                &endpoint,
                (&self.client_id, &secret),
                &[("token", token), ("token_type_hint", "access_token")],
            )
            .await
            .map_err(AuthnError::IntrospectionUnavailable)?;
        if answer.get("active") == Some(&Value::Bool(true)) {
            Ok(answer)
        } else {
            Err(AuthnError::Inactive)
        }
    }
}
