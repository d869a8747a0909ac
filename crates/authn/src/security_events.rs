//! The gateway as a receiver of the IdP's security events (OpenID Shared Signals Framework 1.0,
//! with CAEP and RISC events): the transmitter's metadata (`/.well-known/ssf-configuration`) and
//! signing keys, its event stream (found or created, then verified), poll delivery (RFC 8936),
//! and Security Event Tokens (RFC 8417) validated — signature with the transmitter's key and that
//! key's algorithm only, `typ` `secevent+jwt`, `iss`, `aud`, `iat` neither in the future nor too
//! old, a `jti`, one event, and its subject (RFC 9493 subject identifiers). That a `jti` is used
//! once is the caller's to check: it is shared by every replica. Push delivery (RFC 8935) is
//! received on a gateway-owned path, which hands each token to [`Transmitter::verify`].

use std::sync::RwLock;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::Secret;
use crate::error::AuthnError;
use crate::idp_client::IdpClient;
use crate::keys::KeyStore;
use crate::token::{Checks, Jwt};

/// The SSF stream configuration's delivery method names.
pub const PUSH_METHOD: &str = "urn:ietf:rfc:8935";
/// Poll delivery (RFC 8936).
pub const POLL_METHOD: &str = "urn:ietf:rfc:8936";

/// The event types the gateway asks for and acts on.
pub const EVENTS_REQUESTED: [&str; 9] = [
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
    "https://schemas.openid.net/secevent/caep/event-type/credential-change",
    "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change",
    "https://schemas.openid.net/secevent/caep/event-type/token-claims-change",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled",
    "https://schemas.openid.net/secevent/risc/event-type/account-purged",
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise",
    "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked",
];

/// The SSF verification event.
pub const VERIFICATION_EVENT: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The longest `jti`, subject or state accepted.
const MAX_NAME_BYTES: usize = 256;

/// The transmitter's metadata: what the gateway reads of it.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    configuration_endpoint: Option<String>,
    verification_endpoint: Option<String>,
    #[serde(default)]
    delivery_methods_supported: Vec<String>,
}

/// How events reach the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The transmitter POSTs each event to `endpoint_url`, with `authorization` as its
    /// `Authorization` header when given.
    Push {
        /// The gateway's push endpoint, as the transmitter reaches it.
        endpoint_url: String,
        /// The `Authorization` value the transmitter is to send.
        authorization: Option<String>,
    },
    /// The gateway polls the endpoint the transmitter names.
    Poll,
}

/// A stream the transmitter delivers events on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The stream's id.
    pub id: String,
    /// Where to poll (poll delivery).
    pub poll_url: Option<String>,
    /// The event types the transmitter will deliver.
    pub events_delivered: Vec<String>,
}

/// Who an event is about (RFC 9493 subject identifiers, and SSF's complex subject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An issuer and a subject: a token's `iss` and `sub`.
    IssSub {
        /// The issuer.
        iss: String,
        /// The subject at that issuer.
        sub: String,
    },
    /// An email address (lowercase).
    Email(String),
    /// An identifier only the transmitter and the receiver understand (the gateway reads it as
    /// the subject's `sub`, or as an IdP session id inside a complex subject's `session`).
    Opaque(String),
    /// A complex subject: a user, a session, or both.
    Complex {
        /// The user.
        user: Option<Box<Subject>>,
        /// The session (an `opaque` id: the IdP's `sid`).
        session: Option<Box<Subject>>,
    },
    /// A format the gateway does not read (phone number, DID, URI, account…).
    Other(String),
}

impl Subject {
    /// Reads a subject identifier; `None` when it is not one.
    pub fn parse(value: &Value) -> Option<Self> {
        let object = value.as_object()?;
        let text = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .filter(|text| is_name(text))
                .map(str::to_owned)
        };
        match object.get("format").and_then(Value::as_str)? {
            "iss_sub" => Some(Self::IssSub {
                iss: text("iss")?,
                sub: text("sub")?,
            }),
            "email" => Some(Self::Email(text("email")?.to_ascii_lowercase())),
            "opaque" => Some(Self::Opaque(text("id")?)),
            "complex" => {
                let part = |name: &str| object.get(name).and_then(Self::parse).map(Box::new);
                let (user, session) = (part("user"), part("session"));
                (user.is_some() || session.is_some()).then_some(Self::Complex { user, session })
            }
            other if is_name(other) => Some(Self::Other(other.to_owned())),
            _ => None,
        }
    }

    /// The subject as the audit trail shows it.
    pub fn describe(&self) -> String {
        match self {
            Self::IssSub { iss, sub } => format!("{sub} at {iss}"),
            Self::Email(email) => format!("email {email}"),
            Self::Opaque(id) => format!("opaque {id}"),
            Self::Complex { user, session } => {
                let parts: Vec<String> = [("user", user), ("session", session)]
                    .into_iter()
                    .filter_map(|(name, part)| {
                        part.as_ref().map(|p| format!("{name} {}", p.describe()))
                    })
                    .collect();
                parts.join(", ")
            }
            Self::Other(format) => format!("a `{format}` subject"),
        }
    }
}

/// A verified Security Event Token.
#[derive(Debug, Clone)]
pub struct SecurityEvent {
    /// The token's `jti`.
    pub jti: String,
    /// The transmitter.
    pub issuer: String,
    /// When the token was issued (`iat`).
    pub issued_at: u64,
    /// The event's type URI.
    pub event_type: String,
    /// The event's members.
    pub payload: Map<String, Value>,
    /// Who it is about: the token's `sub_id`, or the event's own `subject`.
    pub subject: Option<Subject>,
}

impl SecurityEvent {
    /// The event's short name: the last segment of its type URI (`account-disabled`).
    pub fn name(&self) -> &str {
        self.event_type
            .rsplit('/')
            .next()
            .unwrap_or(&self.event_type)
    }

    /// When the event happened, by its `event_timestamp` (CAEP), else when it was issued.
    pub fn happened_at(&self) -> u64 {
        self.payload
            .get("event_timestamp")
            .and_then(Value::as_u64)
            .unwrap_or(self.issued_at)
    }
}

/// Why a Security Event Token was refused, as RFC 8935 section 2.4 names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct SetError {
    /// `invalid_request`, `invalid_key`, `invalid_issuer`, `invalid_audience`,
    /// `authentication_failed`, or `unavailable` (the transmitter's keys cannot be had; not the
    /// token's fault — answered 503 so that it is sent again).
    pub code: &'static str,
    /// What failed.
    pub description: String,
}

impl SetError {
    /// A refusal of the request.
    pub fn invalid(description: impl Into<String>) -> Self {
        Self {
            code: "invalid_request",
            description: description.into(),
        }
    }

    fn from_authn(error: &AuthnError) -> Self {
        let code = match error {
            AuthnError::BadSignature
            | AuthnError::UnknownSigningKey
            | AuthnError::AlgorithmMismatch(_) => "invalid_key",
            AuthnError::WrongIssuer => "invalid_issuer",
            AuthnError::WrongAudience => "invalid_audience",
            AuthnError::KeysUnavailable(_) => "unavailable",
            _ => "invalid_request",
        };
        Self {
            code,
            description: error.to_string(),
        }
    }
}

/// A Shared Signals transmitter the gateway receives events from.
pub struct Transmitter {
    issuer: String,
    audience: String,
    keys: KeyStore,
    client: IdpClient,
    /// The bearer token for the transmitter's stream management API.
    token: Option<Secret>,
    max_age_s: u64,
    leeway_s: u64,
    metadata: RwLock<Option<Metadata>>,
}

/// What the transmitter's settings are.
#[derive(Debug, Clone)]
pub struct TransmitterSettings {
    /// The transmitter's issuer (its metadata is at `{issuer}/.well-known/ssf-configuration`).
    pub issuer: String,
    /// The `aud` its events must carry for this gateway.
    pub audience: String,
    /// The file holding the bearer token of its stream management API.
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// The oldest event accepted (by `iat`), seconds.
    pub max_age_s: u64,
    /// Clock skew allowed, seconds.
    pub leeway_s: u64,
    /// How long the transmitter may take to answer.
    pub timeout: Duration,
}

impl Transmitter {
    /// A receiver of `settings.issuer`'s events (nothing is fetched yet).
    pub fn new(settings: &TransmitterSettings) -> Result<Self, String> {
        let client = IdpClient::new(settings.timeout)?;
        let token = match &settings.bearer_token_file {
            Some(file) => Some(Secret::from_file(file)?),
            None => None,
        };
        let keys = KeyStore::new(
            settings.issuer.clone(),
            client.clone(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
        )
        .with_discovery("ssf-configuration");
        Ok(Self {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            keys,
            client,
            token,
            max_age_s: settings.max_age_s,
            leeway_s: settings.leeway_s,
            metadata: RwLock::new(None),
        })
    }

    /// The transmitter's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How long until its keys should be fetched again.
    pub fn refresh_in(&self) -> Duration {
        self.keys.refresh_in()
    }

    /// Fetches the transmitter's metadata and signing keys.
    pub async fn configure(&self) -> Result<(), String> {
        let url = format!(
            "{}/.well-known/ssf-configuration",
            self.issuer.trim_end_matches('/')
        );
        let metadata: Metadata = self.client.get_json(&url).await?;
        if metadata.issuer != self.issuer {
            return Err(format!(
                "`{url}` names issuer `{}`, not `{}`",
                metadata.issuer, self.issuer
            ));
        }
        self.keys.refresh().await?;
        *self.metadata.write().unwrap_or_else(|p| p.into_inner()) = Some(metadata);
        Ok(())
    }

    fn metadata(&self) -> Result<Metadata, String> {
        self.metadata
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| "the transmitter's configuration has not been read yet".to_owned())
    }

    fn bearer(&self) -> Option<&str> {
        self.token.as_ref().map(Secret::expose)
    }

    /// The gateway's stream: one of the transmitter's streams with the same delivery (and, for
    /// push, the same endpoint) is used again; otherwise one is created.
    pub async fn ensure_stream(&self, delivery: &Delivery) -> Result<Stream, String> {
        let metadata = self.metadata()?;
        let endpoint = metadata.configuration_endpoint.ok_or_else(|| {
            "the transmitter publishes no `configuration_endpoint` for streams".to_owned()
        })?;
        let method = match delivery {
            Delivery::Push { .. } => PUSH_METHOD,
            Delivery::Poll => POLL_METHOD,
        };
        if !metadata.delivery_methods_supported.is_empty()
            && !metadata
                .delivery_methods_supported
                .iter()
                .any(|m| m == method)
        {
            return Err(format!("the transmitter does not deliver by `{method}`"));
        }
        let (status, listed) = self
            .client
            .send_json(Method::GET, &endpoint, self.bearer(), None)
            .await?;
        if status.is_success() {
            let streams = match listed {
                Value::Array(streams) => streams,
                Value::Null => Vec::new(),
                one => vec![one],
            };
            if let Some(found) = streams
                .iter()
                .find(|stream| same_delivery(stream, delivery))
            {
                return stream_of(found);
            }
        }
        let mut delivery_config = json!({"method": method});
        if let Delivery::Push {
            endpoint_url,
            authorization,
        } = delivery
        {
            delivery_config["endpoint_url"] = json!(endpoint_url);
            if let Some(authorization) = authorization {
                delivery_config["authorization_header"] = json!(authorization);
            }
        }
        let create = json!({
            "delivery": delivery_config,
            "events_requested": EVENTS_REQUESTED,
            "description": "invoiceguard: leavers, movers and session ends",
        });
        let (status, created) = self
            .client
            .send_json(Method::POST, &endpoint, self.bearer(), Some(&create))
            .await?;
        if !status.is_success() {
            return Err(format!(
                "`{endpoint}` refused the stream: {status} {created}"
            ));
        }
        stream_of(&created)
    }

    /// Asks the transmitter for a verification event carrying `state` on the stream.
    pub async fn request_verification(&self, stream: &Stream, state: &str) -> Result<(), String> {
        let endpoint = self
            .metadata()?
            .verification_endpoint
            .ok_or_else(|| "the transmitter publishes no `verification_endpoint`".to_owned())?;
        let body = json!({"stream_id": stream.id, "state": state});
        let (status, answer) = self
            .client
            .send_json(Method::POST, &endpoint, self.bearer(), Some(&body))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "`{endpoint}` refused verification: {status} {answer}"
            ))
        }
    }

    /// One poll (RFC 8936): acknowledges `ack`, reports `errors` (`jti`, error), and returns the
    /// tokens waiting (`jti`, token) and whether more are available.
    pub async fn poll(
        &self,
        url: &str,
        ack: &[String],
        errors: &[(String, SetError)],
        max_events: u32,
    ) -> Result<(Vec<(String, String)>, bool), String> {
        let mut set_errs = Map::new();
        for (jti, error) in errors {
            set_errs.insert(
                jti.clone(),
                json!({"err": error.code, "description": error.description}),
            );
        }
        let mut body = json!({"maxEvents": max_events, "returnImmediately": true, "ack": ack});
        if !set_errs.is_empty() {
            body["setErrs"] = Value::Object(set_errs);
        }
        let (status, answer) = self
            .client
            .send_json(Method::POST, url, self.bearer(), Some(&body))
            .await?;
        if status != StatusCode::OK {
            return Err(format!("`{url}` answered {status} to a poll: {answer}"));
        }
        let sets = answer
            .get("sets")
            .and_then(Value::as_object)
            .map(|sets| {
                sets.iter()
                    .filter_map(|(jti, token)| Some((jti.clone(), token.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let more = answer
            .get("moreAvailable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((sets, more))
    }

    /// Validates a Security Event Token (RFC 8417; SSF 1.0 section 4): `typ` `secevent+jwt`; the
    /// transmitter's key named by `kid` (its set fetched again once for a key not seen yet) and
    /// that key's algorithm; `iss` the transmitter; `aud` the gateway; `iat` present, not in the
    /// future and at most `max_age_s` old; a `jti`; exactly one event; its subject.
    pub async fn verify(&self, token: &str) -> Result<SecurityEvent, SetError> {
        let arrived = Instant::now();
        let jwt = Jwt::parse(token).map_err(|e| SetError::from_authn(&e))?;
        let typ = jwt.header.typ.as_deref().unwrap_or_default();
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        if !typ.eq_ignore_ascii_case("secevent+jwt") {
            return Err(SetError::invalid(format!(
                "`typ` is `{typ}`, not `secevent+jwt`"
            )));
        }
        let kid = jwt
            .header
            .kid
            .as_deref()
            .ok_or_else(|| SetError::from_authn(&AuthnError::UnknownSigningKey))?;
        let key = match self.keys.get(kid) {
            Ok(Some(key)) => key,
            Ok(None) | Err(_) => {
                self.keys
                    .refresh_for_unknown_kid(arrived)
                    .await
                    .map_err(|e| SetError::from_authn(&e))?;
                self.keys
                    .get(kid)
                    .map_err(|e| SetError::from_authn(&e))?
                    .ok_or_else(|| SetError::from_authn(&AuthnError::UnknownSigningKey))?
            }
        };
        let checks = Checks {
            issuer: &self.issuer,
            audience: std::slice::from_ref(&self.audience),
            required: &["iss", "aud"],
            exp: false,
            nbf: false,
            iat: false,
            leeway_s: self.leeway_s,
        };
        let claims = jwt
            .verify(&key, &checks, crate::authenticator::now_unix())
            .map_err(|e| SetError::from_authn(&e))?;
        let now = crate::authenticator::now_unix();
        let issued_at = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or_else(|| SetError::invalid("no `iat`"))?;
        if issued_at > now + self.leeway_s {
            return Err(SetError::invalid("`iat` is in the future"));
        }
        if issued_at + self.max_age_s < now {
            return Err(SetError::invalid(format!(
                "issued more than {} s ago",
                self.max_age_s
            )));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|jti| is_name(jti))
            .ok_or_else(|| SetError::invalid("no usable `jti`"))?
            .to_owned();
        let events = claims
            .get("events")
            .and_then(Value::as_object)
            .ok_or_else(|| SetError::invalid("no `events` object"))?;
        let mut events = events.iter();
        let (Some((event_type, payload)), None) = (events.next(), events.next()) else {
            return Err(SetError::invalid("a SET carries exactly one event"));
        };
        let payload = payload
            .as_object()
            .cloned()
            .ok_or_else(|| SetError::invalid("the event is not an object"))?;
        let subject = claims
            .get("sub_id")
            .or_else(|| payload.get("subject"))
            .map(|value| {
                Subject::parse(value).ok_or_else(|| SetError::invalid("unreadable `sub_id`"))
            })
            .transpose()?;
        Ok(SecurityEvent {
            jti,
            issuer: self.issuer.clone(),
            issued_at,
            event_type: event_type.clone(),
            payload,
            subject,
        })
    }
}

/// Whether a listed stream delivers the way asked (push: to the same endpoint).
fn same_delivery(stream: &Value, delivery: &Delivery) -> bool {
    let configured = &stream["delivery"];
    match delivery {
        Delivery::Push { endpoint_url, .. } => {
            configured["method"] == PUSH_METHOD && configured["endpoint_url"] == *endpoint_url
        }
        Delivery::Poll => configured["method"] == POLL_METHOD,
    }
}

fn stream_of(value: &Value) -> Result<Stream, String> {
    let id = value
        .get("stream_id")
        .and_then(Value::as_str)
        .filter(|id| is_name(id))
        .ok_or_else(|| format!("the transmitter's stream has no usable `stream_id`: {value}"))?;
    Ok(Stream {
        id: id.to_owned(),
        poll_url: value["delivery"]["endpoint_url"]
            .as_str()
            .filter(|_| value["delivery"]["method"] == POLL_METHOD)
            .map(str::to_owned),
        events_delivered: value["events_delivered"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Printable ASCII (spaces allowed), not empty, bounded.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_BYTES
        && text.bytes().all(|b| (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_read_in_every_listed_format() {
        let read = |v: Value| Subject::parse(&v);
        assert_eq!(
            read(json!({"format": "iss_sub", "iss": "https://idp", "sub": "alice"})),
            Some(Subject::IssSub {
                iss: "https://idp".into(),
                sub: "alice".into()
            })
        );
        assert_eq!(
            read(json!({"format": "email", "email": "Alice@Example.COM"})),
            Some(Subject::Email("alice@example.com".into()))
        );
        assert_eq!(
            read(json!({"format": "opaque", "id": "u-1"})),
            Some(Subject::Opaque("u-1".into()))
        );
        let complex = read(json!({"format": "complex",
            "user": {"format": "iss_sub", "iss": "https://idp", "sub": "alice"},
            "session": {"format": "opaque", "id": "sid-9"}}))
        .unwrap();
        assert_eq!(
            complex.describe(),
            "user alice at https://idp, session opaque sid-9"
        );
        assert_eq!(
            read(json!({"format": "phone_number", "phone_number": "+1"})),
            Some(Subject::Other("phone_number".into()))
        );
        assert_eq!(
            read(json!({"format": "iss_sub", "iss": "https://idp"})),
            None
        );
        assert_eq!(read(json!({"format": "email", "email": "a\nb"})), None);
        assert_eq!(read(json!({"format": "complex"})), None);
        assert_eq!(read(json!("alice")), None);
    }

    #[test]
    fn refusals_carry_the_codes_of_rfc_8935() {
        assert_eq!(
            SetError::from_authn(&AuthnError::BadSignature).code,
            "invalid_key"
        );
        assert_eq!(
            SetError::from_authn(&AuthnError::WrongIssuer).code,
            "invalid_issuer"
        );
        assert_eq!(
            SetError::from_authn(&AuthnError::WrongAudience).code,
            "invalid_audience"
        );
        assert_eq!(
            SetError::from_authn(&AuthnError::Malformed).code,
            "invalid_request"
        );
    }
}
