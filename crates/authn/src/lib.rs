//! Authentication for invoiceguard: finds each trusted IdP by OpenID discovery, keeps its signing
//! keys (JWKS, refreshed by `Cache-Control` and on unknown key ids), validates bearer JWT access
//! tokens (signature with the algorithm the key names; `iss`, `aud`, `exp`, `nbf`, `iat`, `typ`),
//! introspects opaque tokens (RFC 7662), accepts integration accounts' API keys and client
//! certificates, remembers verified tokens until they expire, and turns a caller into a
//! [`Principal`]: an interactive user with roles and MFA facts, or an integration account with
//! scopes. For browser logins it is also an OpenID Connect relying party (`oidc.rs`): it exchanges
//! an authorization code, validates the ID token and back-channel logout tokens. And it receives
//! the IdP's security events (`security_events.rs`: OpenID Shared Signals, CAEP and RISC).

mod authenticator;
mod cache;
mod config;
mod credentials;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod idp_client;
mod introspection;
mod keys;
mod oidc;
mod principal;
mod roles;
mod security_events;
mod token;

pub use authenticator::{Authenticator, Credentials, CredentialsReloaded};
pub use config::{
    ApiKeyAccount, AuthnConfig, IntrospectionConfig, IssuerConfig, MtlsAccount, Secret,
};
pub use credentials::api_key_hash;
pub use error::AuthnError;
pub use keys::LoginEndpoints;
pub use oidc::{IdTokenExpectations, Login, Logout};
pub use principal::{AuthMethod, Principal, PrincipalKind};
pub use security_events::{
    Delivery, EVENTS_REQUESTED, POLL_METHOD, PUSH_METHOD, SecurityEvent, SetError, Stream, Subject,
    Transmitter, TransmitterSettings, VERIFICATION_EVENT,
};
