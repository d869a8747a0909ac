//! The sessions of one gateway, over the state store that every replica shares: a login begun
//! and finished, a session resumed on each request (both timeouts and the device checked, its
//! use noted), and sessions ended — by their person (RP-initiated logout), by the IdP
//! (back-channel logout, by `sid` or `sub`), or by an admin revoking the subject. Nothing is kept
//! per replica, so an ended session is refused by every replica at its next request.

use std::sync::Arc;
use std::time::Duration;

use invoiceguard_authn::{Authenticator, AuthnError, IdTokenExpectations, Logout};
use invoiceguard_state::{RecordKind, StateError, StateStore};

use crate::config::{DeviceChange, SessionConfig};
use crate::device::Device;
use crate::login::{LoginDemand, PendingLogin, random_token};
use crate::record::{Session, Timeouts, id_hash};

/// Logins one address may begin per minute: each keeps a record for the login's time, so a
/// flood of navigations without a session must not fill the store.
pub const LOGINS_PER_ADDRESS_PER_MINUTE: u64 = 60;

/// A logout token's `jti` is remembered at least this long (and at most a day).
const MIN_JTI_MEMORY: Duration = Duration::from_secs(300);

/// Browser sessions.
pub struct Sessions {
    config: SessionConfig,
    issuer: String,
    client_secret: String,
    mfa_acr: Option<String>,
    authn: Arc<Authenticator>,
    state: Arc<StateStore>,
}

/// A login that just finished: the new session's id (for the cookie only), its hash, its
/// record, and where the browser goes next.
pub struct Started {
    /// The session id: the cookie's value, kept nowhere else.
    pub id: String,
    /// The id's SHA-256, as stored and audited.
    pub hash: String,
    /// The session.
    pub session: Session,
    /// The same-origin path the login was begun from.
    pub return_to: String,
}

/// A session found for a request.
pub struct Resumed {
    /// The id's SHA-256, as stored and audited.
    pub hash: String,
    /// The session.
    pub session: Session,
    /// The device the session started on, when this request comes from another.
    pub device_changed_from: Option<Device>,
}

fn unavailable(error: StateError) -> AuthnError {
    AuthnError::SessionsUnavailable(error.to_string())
}

impl Sessions {
    /// Sessions with the configured IdP (`issuer`: the section's, or `authn`'s first) and the
    /// client secret read from its file.
    pub fn new(
        config: SessionConfig,
        default_issuer: &str,
        mfa_acr: Option<String>,
        authn: Arc<Authenticator>,
        state: Arc<StateStore>,
    ) -> Result<Self, String> {
        let client_secret = std::fs::read_to_string(&config.client_secret_file)
            .map_err(|e| {
                format!(
                    "session.client_secret_file: cannot read `{}`: {e}",
                    config.client_secret_file.display()
                )
            })?
            .trim()
            .to_owned();
        Ok(Self {
            issuer: config
                .issuer
                .clone()
                .unwrap_or_else(|| default_issuer.to_owned()),
            mfa_acr: config.mfa_acr.clone().or(mfa_acr),
            config,
            client_secret,
            authn,
            state,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            idle_s: self.config.idle_timeout_s,
            absolute_s: self.config.absolute_timeout_s,
        }
    }

    /// How long `source` must wait before it may begin another login, when it has begun
    /// [`LOGINS_PER_ADDRESS_PER_MINUTE`] already (counted on every replica).
    pub async fn login_wait(
        &self,
        source: std::net::IpAddr,
    ) -> Result<Option<Duration>, AuthnError> {
        self.state
            .limit(
                &format!("login:ip:{source}"),
                LOGINS_PER_ADDRESS_PER_MINUTE,
                Duration::from_secs(60),
                true,
            )
            .await
            .map_err(unavailable)
    }

    /// Begins a login: the URL of the IdP's authorization endpoint to send the browser to, and
    /// the `state` that the login cookie binds to this browser.
    pub async fn begin_login(
        &self,
        return_to: String,
        demand: LoginDemand,
    ) -> Result<(String, String), AuthnError> {
        let endpoints = self.authn.login_endpoints(&self.issuer).ok_or_else(|| {
            AuthnError::KeysUnavailable(format!(
                "`{}` has not published its login endpoints yet",
                self.issuer
            ))
        })?;
        let (state, pending) = PendingLogin::new(return_to, demand)?;
        let record = serde_json::to_string(&pending)
            .map_err(|e| AuthnError::SessionsUnavailable(e.to_string()))?;
        self.state
            .put_record(
                RecordKind::Login,
                &state,
                &record,
                Duration::from_secs(self.config.login_timeout_s),
            )
            .await
            .map_err(unavailable)?;
        let url = pending.authorization_url(
            &endpoints.authorization,
            &self.config,
            &state,
            self.mfa_acr.as_deref(),
        );
        Ok((url, state))
    }

    /// Finishes a login from the callback's query: the `state` must be the one this browser's
    /// login cookie holds and a login in progress (taken, so used once, on any replica); the
    /// code is exchanged and the ID token checked; then a new session (a new id at every
    /// login: an id planted before is never honoured), and the one the browser had is ended.
    pub async fn finish_login(
        &self,
        query: &str,
        login_cookie: Option<&str>,
        previous: Option<&str>,
        device: Device,
        now: u64,
    ) -> Result<Started, AuthnError> {
        let failed = |why: &str| AuthnError::LoginFailed(why.to_owned());
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        if let Some(error) = param("error") {
            let error: String = error
                .chars()
                .filter(char::is_ascii_graphic)
                .take(64)
                .collect();
            return Err(AuthnError::LoginFailed(format!(
                "the IdP answered `{error}`"
            )));
        }
        let state = param("state").ok_or_else(|| failed("the callback has no state"))?;
        let code = param("code").ok_or_else(|| failed("the callback has no code"))?;
        if login_cookie != Some(state.as_str()) {
            return Err(failed(
                "the state is not the one this browser's login began with",
            ));
        }
        let pending = self
            .state
            .take_record(RecordKind::Login, &state)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| failed("the login is unknown, used already or too old"))?;
        let pending: PendingLogin =
            serde_json::from_str(&pending).map_err(|_| failed("the login record is unreadable"))?;
        let login = self
            .authn
            .complete_login(
                &self.issuer,
                (&self.config.client_id, &self.client_secret),
                (&code, &self.config.callback_url(), &pending.verifier),
                &IdTokenExpectations {
                    client_id: &self.config.client_id,
                    nonce: &pending.nonce,
                    max_age_s: pending.max_age_s,
                },
            )
            .await?;
        if let Some(previous) = previous {
            self.end(&id_hash(previous)).await?;
        }
        let principal = login.principal;
        let session = Session {
            subject: principal.id,
            roles: principal.roles,
            scopes: principal.scopes,
            client_id: self.config.client_id.clone(),
            amr: principal.amr,
            acr: principal.acr,
            auth_time: principal.auth_time,
            mfa: principal.mfa,
            issuer: self.issuer.clone(),
            sid: login.sid,
            created: now,
            last_seen: now,
            device,
            csrf: random_token()?,
        };
        let id = random_token()?;
        let hash = id_hash(&id);
        self.store(&hash, &session, now).await?;
        let lifetime = Duration::from_secs(self.config.absolute_timeout_s);
        let mut indexes = vec![subject_index(&session.subject)];
        if let Some(sid) = &session.sid {
            indexes.push(sid_index(&session.issuer, sid));
        }
        for index in indexes {
            self.state
                .index_add(&index, &hash, lifetime)
                .await
                .map_err(unavailable)?;
        }
        Ok(Started {
            id,
            hash,
            session,
            return_to: pending.return_to,
        })
    }

    /// The session a cookie names, if it lives: within both timeouts (an expired one is ended),
    /// on its device (or, with `on_device_change = "end"`, ended), and its use noted.
    pub async fn resume(&self, id: &str, device: &Device, now: u64) -> Result<Resumed, AuthnError> {
        let hash = id_hash(id);
        let record = self
            .state
            .get_record(RecordKind::Session, &hash)
            .await
            .map_err(unavailable)?
            .ok_or(AuthnError::NoSession)?;
        let Ok(mut session) = serde_json::from_str::<Session>(&record) else {
            self.end(&hash).await?;
            return Err(AuthnError::NoSession);
        };
        if let Err(expired) = session.check(now, self.timeouts()) {
            self.end(&hash).await?;
            return Err(expired);
        }
        let device_changed_from = (session.device != *device).then(|| session.device.clone());
        if device_changed_from.is_some() && self.config.on_device_change == DeviceChange::End {
            self.end(&hash).await?;
            return Err(AuthnError::DeviceChanged);
        }
        if now > session.last_seen {
            session.last_seen = now;
            self.store(&hash, &session, now).await?;
        }
        Ok(Resumed {
            hash,
            session,
            device_changed_from,
        })
    }

    async fn store(&self, hash: &str, session: &Session, now: u64) -> Result<(), AuthnError> {
        let record = serde_json::to_string(session)
            .map_err(|e| AuthnError::SessionsUnavailable(e.to_string()))?;
        self.state
            .put_record(
                RecordKind::Session,
                hash,
                &record,
                session.keep_for(now, self.timeouts()),
            )
            .await
            .map_err(unavailable)
    }

    /// Ends one session by its hash: whether it was live.
    pub async fn end(&self, hash: &str) -> Result<bool, AuthnError> {
        self.state
            .delete_record(RecordKind::Session, hash)
            .await
            .map_err(unavailable)
    }

    /// Ends every session of a subject: how many were live.
    pub async fn end_subject(&self, subject: &str) -> Result<usize, AuthnError> {
        self.end_index(&subject_index(subject)).await
    }

    /// Ends the sessions started by one IdP session (`sid` at `issuer`): how many were live.
    pub async fn end_idp_session(&self, issuer: &str, sid: &str) -> Result<usize, AuthnError> {
        self.end_index(&sid_index(issuer, sid)).await
    }

    async fn end_index(&self, index: &str) -> Result<usize, AuthnError> {
        let hashes = self.state.index_take(index).await.map_err(unavailable)?;
        let mut ended = 0;
        for hash in hashes {
            if self.end(&hash).await? {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Acts on a back-channel `logout_token` (OpenID Connect Back-Channel Logout 1.0): verified,
    /// its `jti` used once across replicas, then the sessions of its `sid` (or, without one, of
    /// its `sub`) ended. The logout, and how many sessions it ended.
    pub async fn backchannel_logout(&self, token: &str) -> Result<(Logout, usize), AuthnError> {
        let logout = self
            .authn
            .verify_logout_token(token, &self.config.client_id)
            .await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let remember = Duration::from_secs(logout.exp.saturating_sub(now))
            .clamp(MIN_JTI_MEMORY, Duration::from_secs(86_400));
        let first = self
            .state
            .first_use(
                RecordKind::Used,
                &format!(
                    "logout:{}",
                    id_hash(&format!("{} {}", logout.issuer, logout.jti))
                ),
                remember,
            )
            .await
            .map_err(unavailable)?;
        if !first {
            return Err(AuthnError::BadClaim("jti (used before)".to_owned()));
        }
        let ended = match (&logout.sid, &logout.sub) {
            (Some(sid), _) => self.end_index(&sid_index(&logout.issuer, sid)).await?,
            (None, Some(sub)) => self.end_subject(sub).await?,
            (None, None) => 0,
        };
        Ok((logout, ended))
    }

    /// Where the browser goes after its session ended: the IdP's `end_session_endpoint`
    /// (RP-Initiated Logout 1.0, with `client_id` and a `post_logout_redirect_uri` back to the
    /// gateway's `/.invoiceguard/logged-out`), or straight there when the IdP publishes none.
    pub fn logout_location(&self) -> String {
        let back = format!("{}/.invoiceguard/logged-out", self.config.origin());
        match self
            .authn
            .login_endpoints(&self.issuer)
            .and_then(|endpoints| endpoints.end_session)
        {
            Some(endpoint) => {
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("client_id", &self.config.client_id)
                    .append_pair("post_logout_redirect_uri", &back)
                    .finish();
                let separator = if endpoint.contains('?') { '&' } else { '?' };
                format!("{endpoint}{separator}{query}")
            }
            None => back,
        }
    }
}

fn subject_index(subject: &str) -> String {
    format!("sub:{}", id_hash(subject))
}

fn sid_index(issuer: &str, sid: &str) -> String {
    format!("sid:{}", id_hash(&format!("{issuer} {sid}")))
}
