//! The IdP's security events, received and acted on (OpenID Shared Signals Framework 1.0, with
//! CAEP and RISC): at start the transmitter's metadata and keys are read, the gateway's stream
//! found or created and verified; events then arrive pushed (RFC 8935, at
//! `/.invoiceguard/ssf/events`: `own/ssf.rs`) or polled (RFC 8936, here). Each Security Event
//! Token is verified (`invoiceguard-authn`), its `jti` used once across replicas, and acted on
//! through the machinery every replica already follows — revocations, ended sessions, and the
//! lifecycle marks (`lifecycle.rs`) — then recorded with what was done.
//!
//! | event | what the gateway does |
//! |---|---|
//! | RISC `account-disabled` | revokes the subject (every replica, within a second), ends its sessions |
//! | RISC `account-enabled` | lifts the revocation `account-disabled` made (no other) |
//! | RISC `account-purged` | revokes for good, ends sessions |
//! | RISC `credential-compromise`, CAEP `credential-change`, `token-claims-change` | tokens issued before refused (a fresh login), sessions ended |
//! | RISC `sessions-revoked`, CAEP `session-revoked` | sessions ended (one IdP session when the subject names it), tokens issued before refused |
//! | CAEP `assurance-level-change` (decrease) | earlier multi-factor logins no longer count: a step-up |

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use invoiceguard_audit::LifecycleRecord;
use invoiceguard_authn::{
    Delivery, SecurityEvent, SetError, Stream, Subject, Transmitter, TransmitterSettings,
    VERIFICATION_EVENT,
};
use invoiceguard_state::{RecordKind, Table};
use serde::Deserialize;

use crate::gateway::Gateway;
use crate::lifecycle::{Mark, record_event};

/// How often a pushed stream is looked up (and created again when the transmitter lost it).
const CHECK_STREAM: Duration = Duration::from_secs(600);

/// The gateway's push endpoint, under its own prefix.
pub(crate) const PUSH_PATH: &str = "/.invoiceguard/ssf/events";

/// The IdP's security events (`[ssf]`); off when absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfConfig {
    /// The transmitter's issuer: its metadata is `{transmitter}/.well-known/ssf-configuration`.
    pub transmitter: String,
    /// The `aud` the transmitter's events carry for this gateway.
    pub audience: String,
    /// `push` (the transmitter POSTs each event to `push_url`) or `poll` (the gateway asks).
    #[serde(default = "default_delivery")]
    pub delivery: String,
    /// Push: this gateway's `/.invoiceguard/ssf/events` as the transmitter reaches it.
    #[serde(default)]
    pub push_url: Option<String>,
    /// Push: a file holding the `Authorization` value the transmitter must send (set on the
    /// stream); pushes without it are refused. Without the file, the event's signature alone
    /// proves it.
    #[serde(default)]
    pub push_authorization_file: Option<PathBuf>,
    /// A file holding the bearer token of the transmitter's stream management API.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Poll: how often (default 1000 ms).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The oldest event accepted, by its `iat` (default 86400 s); its `jti` is remembered as
    /// long, so a replay is refused.
    #[serde(default = "default_max_event_age_s")]
    pub max_event_age_s: u64,
}

fn default_delivery() -> String {
    "push".to_owned()
}

fn default_poll_interval_ms() -> u64 {
    1000
}

fn default_max_event_age_s() -> u64 {
    86_400
}

impl SsfConfig {
    /// Every problem, as `ssf.key: problem`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let is_url = |url: &str| {
            matches!(
                url.parse::<http::Uri>()
                    .ok()
                    .as_ref()
                    .and_then(http::Uri::scheme_str),
                Some("http" | "https")
            )
        };
        if !is_url(&self.transmitter) {
            problems.push(format!(
                "ssf.transmitter: `{}` is not an http(s) URL",
                self.transmitter
            ));
        }
        if self.audience.trim().is_empty() {
            problems.push("ssf.audience: must not be empty".to_owned());
        }
        match (self.delivery.as_str(), &self.push_url) {
            ("push", Some(url)) if !url.ends_with(PUSH_PATH) || !is_url(url) => {
                problems.push(format!(
                    "ssf.push_url: `{url}` is not an http(s) URL ending in `{PUSH_PATH}`"
                ));
            }
            ("push", None) => problems.push(
                "ssf.push_url: push delivery needs the URL the transmitter posts to".to_owned(),
            ),
            ("push" | "poll", _) => {}
            (other, _) => problems.push(format!(
                "ssf.delivery: `{other}` is neither `push` nor `poll`"
            )),
        }
        if !(100..=60_000).contains(&self.poll_interval_ms) {
            problems.push(format!(
                "ssf.poll_interval_ms: {} is outside 100..=60000",
                self.poll_interval_ms
            ));
        }
        if !(60..=7 * 86_400).contains(&self.max_event_age_s) {
            problems.push(format!(
                "ssf.max_event_age_s: {} is outside 60..=604800",
                self.max_event_age_s
            ));
        }
        problems
    }

    /// Resolves the files against the configuration's folder.
    pub(crate) fn resolve_paths(&mut self, base: &std::path::Path) {
        for file in [
            &mut self.push_authorization_file,
            &mut self.bearer_token_file,
        ]
        .into_iter()
        .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
    }

    /// The files read at start.
    pub(crate) fn files(&self) -> Vec<(&'static str, PathBuf)> {
        [
            ("ssf.push_authorization_file", &self.push_authorization_file),
            ("ssf.bearer_token_file", &self.bearer_token_file),
        ]
        .into_iter()
        .filter_map(|(key, file)| file.clone().map(|file| (key, file)))
        .collect()
    }
}

/// The receiving end of one transmitter.
pub(crate) struct Receiver {
    transmitter: Transmitter,
    config: SsfConfig,
    /// What a push must carry in `Authorization`.
    push_authorization: Option<String>,
    /// The `state` of the verification the gateway asked for.
    verification_state: String,
    /// Whether that verification event arrived.
    verified: AtomicBool,
    /// Whether the stream is set up (read by the readiness probe).
    streaming: AtomicBool,
}

impl Receiver {
    /// The receiver of a configuration (nothing is asked of the transmitter yet).
    pub(crate) fn new(
        config: &SsfConfig,
        leeway_s: u64,
        timeout: Duration,
    ) -> Result<Self, String> {
        let transmitter = Transmitter::new(&TransmitterSettings {
            issuer: config.transmitter.clone(),
            audience: config.audience.clone(),
            bearer_token_file: config.bearer_token_file.clone(),
            max_age_s: config.max_event_age_s,
            leeway_s,
            timeout,
        })?;
        let push_authorization = match &config.push_authorization_file {
            Some(file) => {
                let value = std::fs::read_to_string(file)
                    .map_err(|e| format!("ssf.push_authorization_file `{}`: {e}", file.display()))?
                    .trim()
                    .to_owned();
                if value.is_empty() {
                    return Err(format!(
                        "ssf.push_authorization_file `{}` is empty",
                        file.display()
                    ));
                }
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            transmitter,
            config: config.clone(),
            push_authorization,
            verification_state: crate::trace::random_uuid(),
            verified: AtomicBool::new(false),
            streaming: AtomicBool::new(false),
        })
    }

    /// Whether pushes are what the transmitter sends.
    pub(crate) fn takes_pushes(&self) -> bool {
        self.config.delivery == "push"
    }

    /// Whether a push's `Authorization` header is the one set on the stream (compared in
    /// constant time); any when none is configured.
    pub(crate) fn push_authorized(&self, presented: Option<&str>) -> bool {
        let Some(expected) = &self.push_authorization else {
            return true;
        };
        let digest =
            |text: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
        aws_lc_rs::constant_time::verify_slices_are_equal(
            digest(presented.unwrap_or_default()).as_ref(),
            digest(expected).as_ref(),
        )
        .is_ok()
    }

    /// The readiness report's part.
    pub(crate) fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "transmitter": self.transmitter.issuer(),
            "delivery": self.config.delivery,
            "stream": self.streaming.load(Ordering::Relaxed),
            "verified": self.verified.load(Ordering::Relaxed),
        })
    }

    fn delivery(&self) -> Delivery {
        match (self.config.delivery.as_str(), &self.config.push_url) {
            ("push", Some(url)) => Delivery::Push {
                endpoint_url: url.clone(),
                authorization: self.push_authorization.clone(),
            },
            _ => Delivery::Poll,
        }
    }

    /// Sets the stream up: metadata, keys, the stream, a verification asked for.
    async fn set_up(&self) -> Result<Stream, String> {
        self.transmitter.configure().await?;
        let stream = self.transmitter.ensure_stream(&self.delivery()).await?;
        self.streaming.store(true, Ordering::Relaxed);
        if let Err(error) = self
            .transmitter
            .request_verification(&stream, &self.verification_state)
            .await
        {
            tracing::warn!(%error, "the transmitter's stream was not verified");
        }
        Ok(stream)
    }
}

/// Keeps the stream set up and, with poll delivery, polls it, for as long as the gateway runs.
pub(crate) fn spawn(gateway: &Arc<Gateway>) {
    if gateway.ssf.is_none() {
        return;
    }
    let weak = Arc::downgrade(gateway);
    tokio::spawn(async move {
        let mut stream = None;
        let mut set_up_at = tokio::time::Instant::now();
        let mut ack: Vec<String> = Vec::new();
        let mut errors: Vec<(String, SetError)> = Vec::new();
        loop {
            let Some(gateway) = weak.upgrade() else {
                return;
            };
            let Some(receiver) = gateway.ssf.as_ref() else {
                return;
            };
            let wait = Duration::from_millis(receiver.config.poll_interval_ms);
            match &stream {
                None => match receiver.set_up().await {
                    Ok(set_up) => {
                        tracing::info!(stream = %set_up.id, delivery = %receiver.config.delivery, "security event stream set up");
                        stream = Some(set_up);
                        set_up_at = tokio::time::Instant::now();
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "security event stream not set up yet; retrying");
                        drop(gateway);
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                },
                Some(Stream {
                    poll_url: Some(url),
                    ..
                }) if !receiver.takes_pushes() => {
                    let url = url.clone();
                    match receiver.transmitter.poll(&url, &ack, &errors, 50).await {
                        Ok((sets, more)) => {
                            ack.clear();
                            errors.clear();
                            for (jti, token) in sets {
                                match receive(&gateway, &token).await {
                                    Ok(_) => ack.push(jti),
                                    Err(error) if error.code == "unavailable" => {}
                                    Err(error) => errors.push((jti, error)),
                                }
                            }
                            if more || !ack.is_empty() || !errors.is_empty() {
                                continue;
                            }
                        }
                        Err(error) => {
                            // The stream may be gone (the transmitter restarted): set it up again.
                            tracing::warn!(%error, "security events not polled; setting the stream up again");
                            stream = None;
                        }
                    }
                }
                // A pushed stream is looked up again now and then: one the transmitter lost is
                // created again.
                Some(_) if set_up_at.elapsed() > CHECK_STREAM => stream = None,
                Some(_) => {}
            }
            drop(gateway);
            tokio::time::sleep(wait).await;
        }
    });
}

/// What receiving one token came to: the event, what was done, and the event's detail line.
pub(crate) struct Received {
    pub(crate) record: LifecycleRecord,
    pub(crate) detail: String,
}

/// Verifies a Security Event Token, uses its `jti` once across replicas, acts on it and records
/// it (a polled one here; a pushed one in its request's event, by the caller). A refused token
/// is recorded too.
pub(crate) async fn receive(gateway: &Gateway, token: &str) -> Result<Received, SetError> {
    let Some(receiver) = gateway.ssf.as_ref() else {
        return Err(SetError::invalid("security events are not configured"));
    };
    let pushed = receiver.takes_pushes();
    let refused = |error: SetError| {
        if !pushed && error.code != "unavailable" {
            let record = LifecycleRecord {
                subject: "*".to_owned(),
                source: "ssf",
                transmitter: Some(receiver.transmitter.issuer().to_owned()),
                acted: vec!["refused".to_owned()],
                ..LifecycleRecord::default()
            };
            let detail = format!("security event refused: {error}");
            record_event(gateway.audit(), "ssf:refused", "high", None, record, detail);
        }
        error
    };
    let event = receiver.transmitter.verify(token).await.map_err(refused)?;
    let used = format!(
        "ssf:{}",
        invoiceguard_session::id_hash(&format!("{} {}", event.issuer, event.jti))
    );
    let remember = Duration::from_secs(receiver.config.max_event_age_s + 600);
    match gateway
        .state()
        .first_use(RecordKind::Used, &used, remember)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(refused(SetError::invalid(format!(
                "jti `{}` was received before (a replay)",
                event.jti
            ))));
        }
        Err(error) => {
            return Err(SetError {
                code: "unavailable",
                description: error.to_string(),
            });
        }
    }
    let mut record = act(gateway, receiver, &event).await;
    record.jti = Some(event.jti.clone());
    record.transmitter = Some(event.issuer.clone());
    record.event_type = Some(event.event_type.clone());
    let detail = format!(
        "security event {} about {}: {}",
        event.name(),
        event
            .subject
            .as_ref()
            .map_or_else(|| "no subject".to_owned(), Subject::describe),
        record.acted.join(", ")
    );
    if !pushed {
        let action = format!("ssf:{}", event.name());
        record_event(
            gateway.audit(),
            &action,
            "high",
            None,
            record.clone(),
            detail.clone(),
        );
    }
    Ok(Received { record, detail })
}

/// The subject's `sub` and the IdP session an event names, as far as the gateway can tell.
async fn resolve(
    gateway: &Gateway,
    subject: &Subject,
) -> (Option<String>, Option<(String, String)>) {
    match subject {
        Subject::IssSub { iss, sub } => {
            let known = gateway
                .authn()
                .config()
                .issuers()
                .iter()
                .any(|issuer| &issuer.issuer == iss);
            (known.then(|| sub.clone()), None)
        }
        Subject::Opaque(id) => (Some(id.clone()), None),
        Subject::Email(email) => {
            let found = gateway
                .state()
                .get_record(RecordKind::Email, email)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "an email subject not looked up");
                    None
                });
            (found, None)
        }
        Subject::Complex { user, session } => {
            let sub = match user {
                Some(user) => Box::pin(resolve(gateway, user)).await.0,
                None => None,
            };
            let session = match session.as_deref() {
                Some(Subject::Opaque(sid)) => {
                    let issuer = match user.as_deref() {
                        Some(Subject::IssSub { iss, .. }) => iss.clone(),
                        _ => gateway
                            .authn()
                            .config()
                            .issuers()
                            .first()
                            .map(|issuer| issuer.issuer.clone())
                            .unwrap_or_default(),
                    };
                    Some((issuer, sid.clone()))
                }
                _ => None,
            };
            (sub, session)
        }
        Subject::Other(_) => (None, None),
    }
}

/// Does what the event asks; the record of what was done.
async fn act(gateway: &Gateway, receiver: &Receiver, event: &SecurityEvent) -> LifecycleRecord {
    let mut record = LifecycleRecord {
        source: "ssf",
        ..LifecycleRecord::default()
    };
    if event.event_type == VERIFICATION_EVENT {
        let state = event
            .payload
            .get("state")
            .and_then(serde_json::Value::as_str);
        let ours = state == Some(receiver.verification_state.as_str());
        if ours {
            receiver.verified.store(true, Ordering::Relaxed);
        }
        record.subject = "*".to_owned();
        record.acted.push(
            if ours {
                "stream_verified"
            } else {
                "verification_of_another_receiver"
            }
            .to_owned(),
        );
        return record;
    }
    let (sub, session) = match &event.subject {
        Some(subject) => resolve(gateway, subject).await,
        None => (None, None),
    };
    record.subject = sub.clone().unwrap_or_else(|| {
        event
            .subject
            .as_ref()
            .map_or_else(|| "*".to_owned(), Subject::describe)
    });
    let Some(sub) = sub else {
        record
            .acted
            .push("nothing: the subject is not one the gateway knows".to_owned());
        return record;
    };
    let now = crate::trace::now_unix();
    let mut acts = Acts {
        gateway,
        sub: &sub,
        record: &mut record,
    };
    match event.name() {
        "account-disabled" => {
            acts.revoke().await;
            acts.mark(|mark| mark.disabled_by_idp = true).await;
            acts.end_sessions(None).await;
        }
        "account-purged" => {
            acts.revoke().await;
            acts.mark(|mark| mark.purged = true).await;
            acts.end_sessions(None).await;
        }
        "account-enabled" => {
            let mark = gateway.lifecycle.mark(&sub);
            if mark.disabled_by_idp && !mark.purged {
                acts.lift().await;
                acts.mark(|mark| mark.disabled_by_idp = false).await;
            } else {
                acts.record
                    .acted
                    .push("nothing: not disabled by the IdP (another revocation stays)".to_owned());
            }
        }
        "credential-compromise" | "credential-change" | "token-claims-change" => {
            acts.logins_before(now).await;
            acts.end_sessions(None).await;
        }
        "sessions-revoked" => {
            acts.logins_before(now).await;
            acts.end_sessions(None).await;
        }
        "session-revoked" => {
            if session.is_none() {
                acts.logins_before(now).await;
            }
            acts.end_sessions(session.as_ref()).await;
        }
        "assurance-level-change" => {
            let direction = event
                .payload
                .get("change_direction")
                .and_then(serde_json::Value::as_str);
            if direction == Some("increase") {
                acts.record
                    .acted
                    .push("nothing: the assurance rose".to_owned());
            } else {
                acts.mark(|mark| mark.mfa_before = Some(now)).await;
                acts.record.acted.push("step_up_required".to_owned());
            }
        }
        other => acts.record.acted.push(format!(
            "nothing: `{other}` is not an event the gateway acts on"
        )),
    }
    if let Some(reason) = event
        .payload
        .get("reason_admin")
        .and_then(|r| r.get("en").or(Some(r)))
        .and_then(serde_json::Value::as_str)
    {
        record.reason = Some(reason.chars().take(256).collect());
    }
    record
}

/// The acts of one event on one subject, each noted in its record (a failure too: the event
/// is still recorded, and the store's failure named).
struct Acts<'a> {
    gateway: &'a Gateway,
    sub: &'a str,
    record: &'a mut LifecycleRecord,
}

impl Acts<'_> {
    fn note(&mut self, done: Result<String, String>) {
        self.record.acted.push(match done {
            Ok(done) => done,
            Err(error) => format!("failed: {error}"),
        });
    }

    async fn revoke(&mut self) {
        let done = self.gateway.revoke(self.sub, 0).await;
        self.note(
            done.map(|()| "revoked".to_owned())
                .map_err(|e| e.to_string()),
        );
    }

    async fn lift(&mut self) {
        let done = self.gateway.lift(self.sub).await;
        self.note(
            done.map(|lifted| if lifted { "lifted" } else { "nothing to lift" }.to_owned())
                .map_err(|e| e.to_string()),
        );
    }

    async fn end_sessions(&mut self, session: Option<&(String, String)>) {
        let Some(sessions) = self.gateway.sessions.as_deref() else {
            return;
        };
        let ended = match session {
            Some((issuer, sid)) => sessions.end_idp_session(issuer, sid).await,
            None => sessions.end_subject(self.sub).await,
        };
        self.note(
            ended
                .map(|n| format!("sessions_ended:{n}"))
                .map_err(|e| e.to_string()),
        );
    }

    async fn logins_before(&mut self, at: u64) {
        self.mark(|mark| {
            mark.logins_before = Some(mark.logins_before.map_or(at, |before| before.max(at)));
        })
        .await;
        self.record.acted.push(format!("logins_before:{at}"));
    }

    /// Changes the subject's mark in the store (every replica reads it at once).
    async fn mark(&mut self, change: impl FnOnce(&mut Mark)) {
        let mut mark = self.gateway.lifecycle.mark(self.sub);
        change(&mut mark);
        let text = serde_json::to_string(&mark).unwrap_or_default();
        let state = self.gateway.state();
        let done = match state.table_put(Table::Lifecycle, self.sub, &text).await {
            Ok(()) => {
                self.gateway.lifecycle.refresh(state).await;
                Ok(())
            }
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = done {
            self.note(Err(error));
        }
    }
}
