//! Joiners, movers and leavers at the gateway. Every replica keeps two small tables whole in
//! memory — what the IdP's security events asked of a subject (`Mark`: logins before a time
//! refused, multi-factor logins before a time not counted) and the time-limited role grants in
//! force (`Grant`) — read again when the state store announces a change (at once, by pub/sub
//! with Redis) and every few seconds, and applied to each request's principal without a state
//! lookup ([`Lifecycle::apply`]). A grant past its end stops counting at that second on every
//! replica by the clock alone; one replica then removes it from the store and records its expiry.
//! A subject's roles are compared with the last ones seen when a token is verified (not when a
//! cached one is reused): a change is an `identity:roles_changed` event, once across replicas.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use invoiceguard_audit::{AuditEvent, AuditLog, GrantUse, LifecycleRecord};
use invoiceguard_authn::{AuthnError, Principal, PrincipalKind};
use invoiceguard_state::{StateStore, Table};
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;

/// The tables are read again at least this often, even without an announcement.
const RESYNC: Duration = Duration::from_secs(5);

/// How often expired grants are looked for.
const SWEEP: Duration = Duration::from_secs(1);

/// How long a mark that only refuses older logins is kept: longer than any token or session
/// lives (a session's absolute timeout is at most 7 days), so nothing it refuses is still valid
/// when it goes.
const MARK_KEEP_S: u64 = 8 * 86_400;

/// What security events asked of one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    /// A token issued (or a session started) before this time (Unix seconds) is refused: a
    /// fresh login is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) logins_before: Option<u64>,
    /// A multi-factor login before this time no longer counts as one (the IdP lowered the
    /// subject's assurance): policies that need MFA ask for a step-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mfa_before: Option<u64>,
    /// The IdP disabled the account (RISC `account-disabled`), so `account-enabled` lifts the
    /// revocation it caused — and no other.
    #[serde(default)]
    pub(crate) disabled_by_idp: bool,
    /// The IdP purged the account: nothing lifts its revocation.
    #[serde(default)]
    pub(crate) purged: bool,
}

/// A time-limited role grant, as kept in the state store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub(crate) id: String,
    pub(crate) subject: String,
    pub(crate) role: String,
    pub(crate) until_unix: u64,
    pub(crate) ticket: String,
    pub(crate) reason: String,
    pub(crate) granted_by: String,
    pub(crate) granted_at: u64,
}

impl Grant {
    fn usage(&self) -> GrantUse {
        GrantUse {
            id: self.id.clone(),
            role: self.role.clone(),
            until_unix: self.until_unix,
            ticket: self.ticket.clone(),
        }
    }
}

/// The tables as this replica last read them; `None` until read once.
#[derive(Default)]
struct View {
    marks: HashMap<String, Mark>,
    /// Subject → its grants.
    grants: HashMap<String, Vec<Grant>>,
}

/// Marks and grants, kept current on every replica.
#[derive(Default)]
pub(crate) struct Lifecycle {
    view: RwLock<View>,
    /// The roles this replica last noted per subject, and when: a token showing the same roles
    /// again is not news, so the store is not asked (it would answer "no change" anyway).
    noted: std::sync::Mutex<HashMap<String, (Vec<String>, std::time::Instant)>>,
}

/// Subjects whose last noted roles this replica remembers (then it starts over).
const MAX_NOTED: usize = 65_536;

/// How often the same roles are noted again anyway (keeping the email address remembered).
const NOTE_AGAIN: Duration = Duration::from_secs(86_400);

/// A principal as the lifecycle tables leave it, and the grants that added a role to it.
pub(crate) struct Applied {
    pub(crate) principal: Arc<Principal>,
    pub(crate) grants: Vec<GrantUse>,
}

impl Lifecycle {
    /// Applies what security events asked and the grants in force to a request's principal at
    /// `now_unix`: refused when a fresh login is required; its `mfa` dropped when the IdP lowered
    /// its assurance after its login; granted roles added (users only) while their grants last.
    /// Nothing to look up when both tables are empty — the usual case.
    pub(crate) fn apply(
        &self,
        principal: Arc<Principal>,
        now_unix: u64,
    ) -> Result<Applied, GatewayError> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        if view.marks.is_empty() && view.grants.is_empty() {
            return Ok(Applied {
                principal,
                grants: Vec::new(),
            });
        }
        let mark = view.marks.get(&principal.id);
        let issued_at = principal.issued_at.unwrap_or(0);
        if mark
            .and_then(|mark| mark.logins_before)
            .is_some_and(|before| issued_at < before)
        {
            return Err(AuthnError::EndedByIdp.into());
        }
        let logged_in_at = principal.auth_time.unwrap_or(issued_at);
        let weakened = principal.mfa
            && mark
                .and_then(|mark| mark.mfa_before)
                .is_some_and(|before| logged_in_at < before);
        let granted: Vec<&Grant> = match principal.kind {
            PrincipalKind::User => view
                .grants
                .get(&principal.id)
                .map(|grants| {
                    grants
                        .iter()
                        .filter(|grant| grant.until_unix > now_unix)
                        .filter(|grant| !principal.roles.contains(&grant.role))
                        .collect()
                })
                .unwrap_or_default(),
            PrincipalKind::ServiceAccount => Vec::new(),
        };
        if !weakened && granted.is_empty() {
            return Ok(Applied {
                principal,
                grants: Vec::new(),
            });
        }
        let mut changed = (*principal).clone();
        if weakened {
            changed.mfa = false;
        }
        changed
            .roles
            .extend(granted.iter().map(|grant| grant.role.clone()));
        changed.roles.sort();
        changed.roles.dedup();
        Ok(Applied {
            principal: Arc::new(changed),
            grants: granted.iter().map(|grant| grant.usage()).collect(),
        })
    }

    /// What security events asked of `subject`.
    pub(crate) fn mark(&self, subject: &str) -> Mark {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.marks.get(subject).cloned().unwrap_or_default()
    }

    /// Every grant, in force or past its end but not yet removed.
    pub(crate) fn grants(&self) -> Vec<Grant> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let mut grants: Vec<Grant> = view.grants.values().flatten().cloned().collect();
        grants.sort_by(|a, b| (a.until_unix, &a.id).cmp(&(b.until_unix, &b.id)));
        grants
    }

    /// The roles `subject` holds by grants in force at `now_unix`.
    pub(crate) fn granted_roles(&self, subject: &str, now_unix: u64) -> Vec<String> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.grants
            .get(subject)
            .map(|grants| {
                grants
                    .iter()
                    .filter(|grant| grant.until_unix > now_unix)
                    .map(|grant| grant.role.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reads both tables; on failure the last known ones stay (a store outage never lifts a
    /// mark nor ends a grant early — the clock still ends grants).
    pub(crate) async fn refresh(&self, state: &StateStore) {
        let (marks, grants) = match (
            state.table_all(Table::Lifecycle).await,
            state.table_all(Table::Grants).await,
        ) {
            (Ok(marks), Ok(grants)) => (marks, grants),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "lifecycle tables not refreshed; the last known stay");
                return;
            }
        };
        let marks = marks
            .into_iter()
            .filter_map(|(subject, text)| match serde_json::from_str(&text) {
                Ok(mark) => Some((subject, mark)),
                Err(error) => {
                    tracing::warn!(%subject, %error, "unreadable lifecycle mark skipped");
                    None
                }
            })
            .collect();
        let mut by_subject: HashMap<String, Vec<Grant>> = HashMap::new();
        for (id, text) in grants {
            match serde_json::from_str::<Grant>(&text) {
                Ok(grant) => by_subject
                    .entry(grant.subject.clone())
                    .or_default()
                    .push(grant),
                Err(error) => tracing::warn!(%id, %error, "unreadable grant skipped"),
            }
        }
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = View {
            marks,
            grants: by_subject,
        };
    }

    /// Keeps the tables current, and removes grants past their end (recording each expiry
    /// once, by the replica whose removal took it), for as long as the gateway runs.
    pub(crate) fn spawn_sync(self: &Arc<Self>, state: Arc<StateStore>, audit: Arc<AuditLog>) {
        let weak = Arc::downgrade(self);
        let changes = state.revocation_changes();
        tokio::spawn(async move {
            let mut last_read = tokio::time::Instant::now();
            loop {
                let Some(me) = weak.upgrade() else { return };
                if last_read.elapsed() >= RESYNC {
                    me.refresh(&state).await;
                    last_read = tokio::time::Instant::now();
                }
                me.sweep(&state, &audit).await;
                drop(me);
                tokio::select! {
                    () = changes.notified() => last_read -= RESYNC,
                    () = tokio::time::sleep(SWEEP) => {}
                }
            }
        });
    }

    /// Marks that refuse only logins long past: removed, so the table does not grow for good.
    fn stale_marks(&self, now_unix: u64) -> Vec<String> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.marks
            .iter()
            .filter(|(_, mark)| {
                !mark.disabled_by_idp
                    && !mark.purged
                    && mark.logins_before.max(mark.mfa_before).unwrap_or(0) + MARK_KEEP_S < now_unix
            })
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    /// Removes the grants past their end from the store; records those this replica removed.
    async fn sweep(&self, state: &StateStore, audit: &AuditLog) {
        let now = crate::trace::now_unix();
        for subject in self.stale_marks(now) {
            if let Err(error) = state.table_remove(Table::Lifecycle, &subject).await {
                tracing::warn!(%error, "a stale lifecycle mark not removed yet");
            }
        }
        let expired: Vec<Grant> = self
            .grants()
            .into_iter()
            .filter(|grant| grant.until_unix <= now)
            .collect();
        if expired.is_empty() {
            return;
        }
        for grant in expired {
            match state.table_remove(Table::Grants, &grant.id).await {
                Ok(true) => {
                    let record = grant_record(&grant, "expired");
                    let detail = format!(
                        "grant {} of {} to {} ended at {} (ticket {})",
                        grant.id, grant.role, grant.subject, grant.until_unix, grant.ticket
                    );
                    record_event(audit, "grant:expired", "high", None, record, detail);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, grant = %grant.id, "an ended grant not removed yet");
                    return;
                }
            }
        }
        self.refresh(state).await;
    }
}

/// The lifecycle record of a grant, with what was done.
pub(crate) fn grant_record(grant: &Grant, acted: &str) -> LifecycleRecord {
    LifecycleRecord {
        subject: grant.subject.clone(),
        source: "grant",
        grant_id: Some(grant.id.clone()),
        role: Some(grant.role.clone()),
        until_unix: Some(grant.until_unix),
        ticket: Some(grant.ticket.clone()),
        reason: Some(grant.reason.clone()),
        acted: vec![acted.to_owned()],
        ..LifecycleRecord::default()
    }
}

/// Writes a lifecycle event that no request carries (an expiry, a polled security event, a role
/// change seen): `category: lifecycle`, the actor when there is one.
pub(crate) fn record_event(
    audit: &AuditLog,
    action: &str,
    severity: &'static str,
    actor: Option<&Principal>,
    record: LifecycleRecord,
    detail: String,
) {
    let mut event = AuditEvent::system(action, severity, detail);
    event.category = "lifecycle";
    event.decision.reason = "lifecycle";
    event.actor = actor.map(crate::audit_trail::actor);
    event.resource = Some(invoiceguard_audit::ResourceRecord {
        kind: "Subject".to_owned(),
        id: record.subject.clone(),
    });
    event.lifecycle = Some(record);
    if let Err(error) = audit.record(event) {
        tracing::error!(%error, action, "lifecycle audit event not written");
    }
}

impl Lifecycle {
    /// Whether this replica noted exactly these roles for the subject within a day (then there
    /// is nothing to ask the store); otherwise they are noted now.
    fn noted_already(&self, principal: &Principal) -> bool {
        let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((roles, at)) = noted.get(&principal.id)
            && *roles == principal.roles
            && at.elapsed() < NOTE_AGAIN
        {
            return true;
        }
        if noted.len() >= MAX_NOTED {
            noted.clear();
        }
        noted.insert(
            principal.id.clone(),
            (principal.roles.clone(), std::time::Instant::now()),
        );
        false
    }

    /// Notes the roles of a principal whose token was just verified; when they differ from the
    /// last ones seen for the subject (in a token issued no earlier), records
    /// `identity:roles_changed` — once across replicas, as the store's swap is atomic. Also
    /// remembers the subject's email address, so a security event that names the person by it
    /// can be acted on. The same roles this replica noted for the subject within a day are not
    /// asked about again (with the token cache off, every request is a verification). A store
    /// failure only loses the comparison (logged); it never fails the request.
    pub(crate) async fn note_roles(
        &self,
        state: &StateStore,
        audit: &AuditLog,
        principal: &Principal,
    ) {
        if principal.kind != PrincipalKind::User || self.noted_already(principal) {
            return;
        }
        note_roles(state, audit, principal).await;
    }
}

/// See [`Lifecycle::note_roles`].
async fn note_roles(state: &StateStore, audit: &AuditLog, principal: &Principal) {
    let at = principal.issued_at.unwrap_or_else(crate::trace::now_unix);
    let roles = principal.roles.join(" ");
    match state.roles_seen(&principal.id, &roles, at).await {
        Ok(Some(before)) => {
            let before: Vec<String> = before
                .split(' ')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
            let detail = format!(
                "roles of {} changed at the IdP: [{}] → [{}]",
                principal.id,
                before.join(", "),
                principal.roles.join(", ")
            );
            let record = LifecycleRecord {
                subject: principal.id.clone(),
                source: "roles_changed",
                roles_before: Some(before),
                roles_after: Some(principal.roles.clone()),
                acted: vec!["recorded".to_owned()],
                ..LifecycleRecord::default()
            };
            record_event(
                audit,
                "identity:roles_changed",
                "high",
                Some(principal),
                record,
                detail,
            );
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "roles not compared with the last seen"),
    }
    if let Some(email) = &principal.email
        && let Err(error) = state
            .put_record(
                invoiceguard_state::RecordKind::Email,
                email,
                &principal.id,
                EMAIL_MEMORY,
            )
            .await
    {
        tracing::warn!(%error, "email address not remembered");
    }
}

/// How long a subject's email address is remembered after its last token.
const EMAIL_MEMORY: Duration = Duration::from_secs(90 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[&str], mfa: bool, issued_at: u64) -> Arc<Principal> {
        Arc::new(Principal {
            kind: PrincipalKind::User,
            id: "dave".into(),
            client_id: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            scopes: Vec::new(),
            amr: Vec::new(),
            acr: None,
            auth_time: Some(issued_at),
            mfa,
            method: invoiceguard_authn::AuthMethod::Jwt,
            issued_at: Some(issued_at),
            email: None,
        })
    }

    fn grant(role: &str, until_unix: u64) -> Grant {
        Grant {
            id: format!("g-{role}"),
            subject: "dave".into(),
            role: role.into(),
            until_unix,
            ticket: "FIN-1".into(),
            reason: "cover".into(),
            granted_by: "erin".into(),
            granted_at: 0,
        }
    }

    fn with(marks: &[(&str, Mark)], grants: Vec<Grant>) -> Lifecycle {
        let lifecycle = Lifecycle::default();
        {
            let mut view = lifecycle.view.write().unwrap();
            view.marks = marks
                .iter()
                .map(|(s, m)| ((*s).to_owned(), m.clone()))
                .collect();
            for grant in grants {
                view.grants
                    .entry(grant.subject.clone())
                    .or_default()
                    .push(grant);
            }
        }
        lifecycle
    }

    #[test]
    fn marks_that_refuse_only_long_past_logins_go_and_a_disabled_account_stays() {
        let old = Mark {
            logins_before: Some(100),
            ..Mark::default()
        };
        let disabled = Mark {
            logins_before: Some(100),
            disabled_by_idp: true,
            ..Mark::default()
        };
        let recent = Mark {
            mfa_before: Some(100 + MARK_KEEP_S),
            ..Mark::default()
        };
        let lifecycle = with(
            &[("old", old), ("disabled", disabled), ("recent", recent)],
            Vec::new(),
        );
        assert_eq!(lifecycle.stale_marks(101 + MARK_KEEP_S), ["old"]);
    }

    #[test]
    fn the_same_roles_noted_again_are_not_asked_about() {
        let lifecycle = Lifecycle::default();
        assert!(!lifecycle.noted_already(&principal(&["invoicing"], true, 100)));
        assert!(lifecycle.noted_already(&principal(&["invoicing"], true, 101)));
        assert!(!lifecycle.noted_already(&principal(&["approver", "invoicing"], true, 102)));
        assert!(
            !lifecycle.noted_already(&principal(&["invoicing"], true, 100)),
            "an older token's roles go to the store, which knows they are not news"
        );
    }

    #[test]
    fn an_empty_table_leaves_the_principal_as_it_is() {
        let p = principal(&["invoicing"], true, 100);
        let applied = Lifecycle::default().apply(p.clone(), 200).unwrap();
        assert!(Arc::ptr_eq(&applied.principal, &p));
    }

    #[test]
    fn a_token_issued_before_the_event_is_refused_and_a_later_one_is_not() {
        let mark = Mark {
            logins_before: Some(150),
            ..Mark::default()
        };
        let lifecycle = with(&[("dave", mark)], Vec::new());
        assert!(matches!(
            lifecycle.apply(principal(&[], true, 149), 200),
            Err(GatewayError::Unauthenticated(AuthnError::EndedByIdp))
        ));
        assert!(lifecycle.apply(principal(&[], true, 150), 200).is_ok());
    }

    #[test]
    fn a_lowered_assurance_drops_mfa_from_earlier_logins_only() {
        let mark = Mark {
            mfa_before: Some(150),
            ..Mark::default()
        };
        let lifecycle = with(&[("dave", mark)], Vec::new());
        assert!(
            !lifecycle
                .apply(principal(&[], true, 100), 200)
                .unwrap()
                .principal
                .mfa
        );
        assert!(
            lifecycle
                .apply(principal(&[], true, 160), 200)
                .unwrap()
                .principal
                .mfa
        );
    }

    #[test]
    fn a_grant_counts_until_its_end_and_then_stops_by_itself() {
        let lifecycle = with(&[], vec![grant("approver", 300)]);
        let applied = lifecycle
            .apply(principal(&["invoicing"], true, 100), 299)
            .unwrap();
        assert_eq!(applied.principal.roles, ["approver", "invoicing"]);
        assert_eq!(applied.grants.len(), 1);
        assert_eq!(applied.grants[0].ticket, "FIN-1");
        let applied = lifecycle
            .apply(principal(&["invoicing"], true, 100), 300)
            .unwrap();
        assert_eq!(applied.principal.roles, ["invoicing"]);
        assert!(applied.grants.is_empty());
        let held = lifecycle
            .apply(principal(&["approver"], true, 100), 200)
            .unwrap();
        assert!(
            held.grants.is_empty(),
            "a role already held is not the grant's use"
        );
    }
}
