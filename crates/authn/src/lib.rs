//! Authentication for invoiceguard: finds the company IdP by OpenID discovery, keeps its signing
//! keys (JWKS), validates bearer JWT access tokens (signature with the algorithm the key names,
//! `iss`, `aud`, `exp`, `nbf`) and turns a valid token into a [`Principal`]: an interactive user with
//! roles and MFA facts, or an integration account with scopes.

mod authenticator;
mod config;
mod error;
mod idp_client;
mod keys;
mod principal;
mod token;

pub use authenticator::Authenticator;
pub use config::AuthnConfig;
pub use error::AuthnError;
pub use principal::{Principal, PrincipalKind};
