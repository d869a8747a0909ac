//! The one pass over the trail: every event of the period counted into what the sections show.

use std::collections::{BTreeMap, BTreeSet};

use invoiceguard_audit::query::{BULK_ROWS, Logins, View};

/// A first and a last time, and how many.
#[derive(Debug, Clone, Default)]
pub(crate) struct Span {
    pub(crate) first: String,
    pub(crate) last: String,
    pub(crate) count: u64,
}

impl Span {
    fn add(&mut self, time: &str) {
        if self.count == 0 {
            self.first = time.to_owned();
        }
        self.last = time.to_owned();
        self.count += 1;
    }
}

/// One person's requests.
#[derive(Debug, Default)]
pub(crate) struct Person {
    pub(crate) requests: u64,
    pub(crate) with_mfa: u64,
    pub(crate) denied: u64,
    pub(crate) step_ups: u64,
    pub(crate) roles: BTreeSet<String>,
    pub(crate) span: Span,
    pub(crate) last_allowed: Option<String>,
}

/// One integration account's requests.
#[derive(Debug, Default)]
pub(crate) struct Account {
    pub(crate) methods: BTreeSet<String>,
    pub(crate) denied: u64,
    pub(crate) errors: u64,
    pub(crate) span: Span,
    pub(crate) last_allowed: Option<String>,
}

/// One person's exports.
#[derive(Debug, Default)]
pub(crate) struct Exporter {
    pub(crate) exports: u64,
    pub(crate) rows: u64,
    pub(crate) bulk: u64,
    pub(crate) denied: u64,
}

/// A subject revoked in the period, and what it could still do.
#[derive(Debug, Default)]
pub(crate) struct Leaver {
    pub(crate) revoked_at: String,
    pub(crate) by: String,
    pub(crate) detail: String,
    pub(crate) last_allowed_before: Option<String>,
    pub(crate) allowed_after: u64,
    pub(crate) last_allowed_after: Option<String>,
    pub(crate) refused_after: u64,
    pub(crate) lifted_at: Option<String>,
}

/// Everything counted.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) events: u64,
    pub(crate) first: Option<String>,
    pub(crate) last: Option<String>,
    /// Per category: allowed, denied.
    pub(crate) categories: BTreeMap<String, (u64, u64)>,
    /// Per hour (`YYYY-MM-DDTHH`): requests, denied.
    pub(crate) hours: BTreeMap<String, (u64, u64)>,
    pub(crate) people: BTreeMap<String, Person>,
    pub(crate) logins: Logins,
    /// Lockout refusals by who was locked (an address, or a subject).
    pub(crate) lockouts: BTreeMap<(String, String), Span>,
    pub(crate) administration: Vec<Vec<String>>,
    pub(crate) break_glass: Vec<Vec<String>>,
    pub(crate) exports: Vec<Vec<String>>,
    pub(crate) exporters: BTreeMap<String, Exporter>,
    pub(crate) accounts: BTreeMap<String, Account>,
    pub(crate) leavers: BTreeMap<String, Leaver>,
    /// Policy-set versions that decided: their span.
    pub(crate) versions: BTreeMap<String, Span>,
    pub(crate) sod_denials: Vec<Vec<String>>,
    /// The gateway's own events about its trail (spool repairs, sinks lagging and recovered).
    pub(crate) trail_events: Vec<Vec<String>>,
    /// Actors who held the `admin` role: their span.
    pub(crate) admins: BTreeMap<String, Span>,
    /// Browser sessions' life cycle.
    pub(crate) sessions: Sessions,
    /// Time-limited grants given, refused, lifted and expired: time, act, granter, subject,
    /// role, until, ticket, reason, effect, deciding policies.
    pub(crate) grants: Vec<Vec<String>>,
    /// Role changes seen at the IdP: time, subject, before, after.
    pub(crate) role_changes: Vec<Vec<String>>,
    /// The IdP's security events acted on or refused: time, event, subject, what was done.
    pub(crate) security_events: Vec<Vec<String>>,
}

/// What the trail shows of browser sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pub(crate) logins: u64,
    pub(crate) logins_with_mfa: u64,
    pub(crate) logins_refused: u64,
    pub(crate) logouts: u64,
    pub(crate) idp_logouts: u64,
    pub(crate) expired_idle: u64,
    pub(crate) expired_absolute: u64,
    pub(crate) step_ups: u64,
    /// Device changes and cross-site refusals: time, who, what, detail.
    pub(crate) incidents: Vec<Vec<String>>,
}

impl Sessions {
    fn add(&mut self, event: &View<'_>) {
        let action = event.action.as_deref().unwrap_or_default();
        let allowed = event.decision.effect == "allow";
        let detail = event.decision.detail.as_deref().unwrap_or_default();
        let browser = event
            .actor
            .as_ref()
            .is_some_and(|a| a.auth_method == "session")
            || action.starts_with("session:");
        match action {
            "session:login" if allowed => {
                self.logins += 1;
                if event.actor.as_ref().is_some_and(|a| a.mfa) {
                    self.logins_with_mfa += 1;
                }
            }
            "session:login" => self.logins_refused += 1,
            "session:logout" if allowed => self.logouts += 1,
            "session:backchannel_logout" if allowed => self.idp_logouts += 1,
            _ => {}
        }
        if detail.contains("session expired (idle timeout)") {
            self.expired_idle += 1;
        }
        if detail.contains("session expired (absolute timeout)") {
            self.expired_absolute += 1;
        }
        if event.decision.reason == "step_up" && browser && event.outcome.status == 302 {
            self.step_ups += 1;
        }
        let incident = if detail.starts_with("session used from another device")
            || detail == "device_changed"
        {
            Some("device changed")
        } else if event.decision.reason == "cross_site" {
            Some("cross-site request refused")
        } else {
            None
        };
        if let Some(what) = incident {
            self.incidents.push(vec![
                event.time.to_string(),
                event
                    .actor
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |a| a.id.to_string()),
                what.to_owned(),
                format!("{} {}", event.request.method, event.request.path),
                detail.to_owned(),
            ]);
        }
    }
}

impl Tally {
    /// Counts one event of the period (a `complete` one).
    pub(crate) fn add(&mut self, event: &View<'_>) {
        let time = event.time.as_ref();
        self.events += 1;
        if self.first.is_none() {
            self.first = Some(time.to_owned());
        }
        self.last = Some(time.to_owned());
        let denied = event.decision.effect == "deny";
        self.count_totals(event, denied);
        self.logins.add(event);
        self.sessions.add(event);
        let actor = event.actor.as_ref().map(|a| a.id.to_string());
        self.count_actor(event, denied);
        self.count_lockout(event, actor.as_deref());
        self.list(event, actor.as_deref().unwrap_or_default(), denied);
        if !event.decision.policy_version.is_empty()
            && !matches!(event.decision.reason.as_ref(), "admin" | "system")
        {
            self.versions
                .entry(event.decision.policy_version.to_string())
                .or_default()
                .add(time);
        }
        self.count_revocation(event, actor.as_deref(), denied);
        self.count_lifecycle(event, actor.as_deref());
    }

    /// Events by category, and requests and denials by hour.
    fn count_totals(&mut self, event: &View<'_>, denied: bool) {
        let category = self
            .categories
            .entry(event.category.to_string())
            .or_default();
        if denied {
            category.1 += 1;
        } else {
            category.0 += 1;
        }
        if event.category != "audit" {
            let time = event.time.as_ref();
            let hour = self
                .hours
                .entry(time.get(..13).unwrap_or(time).to_owned())
                .or_default();
            hour.0 += 1;
            hour.1 += u64::from(denied);
        }
    }

    /// The events listed one by one: administration acts, the trail's own events, break-glass
    /// uses, exports, segregation-of-duties refusals.
    fn list(&mut self, event: &View<'_>, who: &str, denied: bool) {
        let time = event.time.as_ref();
        let action = event.action.as_deref().unwrap_or("");
        let resource = event
            .resource
            .as_ref()
            .map(|r| format!("{}::{}", r.kind, r.id))
            .unwrap_or_default();
        let detail = event.decision.detail.as_deref().unwrap_or("");
        let status = event.outcome.status.to_string();
        let effect = event.decision.effect.as_ref();
        let owned = |cells: &[&str]| cells.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        // Changes only: a read of the revocation list or the settings changes nothing.
        if matches!(event.category.as_ref(), "administration" | "revocation")
            && !matches!(event.request.method.as_ref(), "GET" | "HEAD" | "OPTIONS")
        {
            self.administration.push(owned(&[
                time, who, action, &resource, effect, &status, detail,
            ]));
        }
        if event.category == "audit" {
            self.trail_events.push(owned(&[
                time,
                &event.instance,
                action,
                &event.severity,
                detail,
            ]));
        }
        if let Some(reason) = &event.break_glass_reason {
            self.break_glass.push(owned(&[
                time,
                who,
                reason,
                action,
                &event.request.path,
                effect,
                &status,
            ]));
        }
        if action.starts_with("export:") {
            self.count_export(event, who, action, &status);
        }
        if denied
            && event
                .decision
                .policies
                .iter()
                .any(|p| p.starts_with("sod."))
        {
            let policies = event.decision.policies.join(" ");
            self.sod_denials
                .push(owned(&[time, who, action, &resource, &policies]));
        }
    }

    fn count_actor(&mut self, event: &View<'_>, denied: bool) {
        let Some(actor) = &event.actor else { return };
        let time = event.time.as_ref();
        match actor.kind.as_ref() {
            "user" => {
                let person = self.people.entry(actor.id.to_string()).or_default();
                person.requests += 1;
                person.with_mfa += u64::from(actor.mfa);
                person.denied += u64::from(denied);
                person.step_ups += u64::from(event.decision.reason == "step_up");
                person
                    .roles
                    .extend(actor.roles.iter().map(|r| r.to_string()));
                person.span.add(time);
                if !denied {
                    person.last_allowed = Some(time.to_owned());
                }
            }
            "service_account" => {
                let account = self.accounts.entry(actor.id.to_string()).or_default();
                account.methods.insert(actor.auth_method.to_string());
                account.denied += u64::from(denied);
                account.errors += u64::from(event.outcome.status >= 500);
                account.span.add(time);
                if !denied {
                    account.last_allowed = Some(time.to_owned());
                }
            }
            _ => {}
        }
        if actor.roles.iter().any(|r| r == "admin") {
            self.admins
                .entry(actor.id.to_string())
                .or_default()
                .add(time);
        }
    }

    fn count_lockout(&mut self, event: &View<'_>, actor: Option<&str>) {
        let locked = event.decision.reason == "rate_limited"
            && event
                .decision
                .detail
                .as_deref()
                .is_some_and(|d| d.starts_with("locked out"));
        if locked {
            let key = match actor {
                Some(subject) => ("subject".to_owned(), subject.to_owned()),
                None => ("address".to_owned(), event.source.ip.to_string()),
            };
            self.lockouts.entry(key).or_default().add(&event.time);
        }
    }

    fn count_export(&mut self, event: &View<'_>, who: &str, action: &str, status: &str) {
        let denied = event.decision.effect == "deny";
        let rows = event.outcome.export_rows;
        let bulk = rows.is_some_and(|r| r > BULK_ROWS);
        self.exports.push(vec![
            event.time.to_string(),
            who.to_owned(),
            action.to_owned(),
            rows.map(|r| r.to_string()).unwrap_or_default(),
            if bulk { "yes" } else { "no" }.to_owned(),
            event.decision.effect.to_string(),
            status.to_owned(),
            event.decision.policies.join(" "),
        ]);
        if action == "export:create" {
            let exporter = self.exporters.entry(who.to_owned()).or_default();
            exporter.exports += 1;
            exporter.rows += rows.unwrap_or(0);
            exporter.bulk += u64::from(bulk);
            exporter.denied += u64::from(denied);
        }
    }

    /// Joiners and movers: grants, role changes, and the IdP's security events.
    fn count_lifecycle(&mut self, event: &View<'_>, actor: Option<&str>) {
        let Some(record) = event.lifecycle.as_ref() else {
            if matches!(event.action.as_deref(), Some("ssf:push")) {
                self.security_events.push(vec![
                    event.time.to_string(),
                    "refused".to_owned(),
                    String::new(),
                    event.decision.detail.as_deref().unwrap_or("").to_owned(),
                ]);
            }
            return;
        };
        let time = event.time.to_string();
        let action = event.action.as_deref().unwrap_or("").to_owned();
        let list = |roles: &Option<Vec<String>>| roles.as_deref().unwrap_or_default().join(" ");
        match record.source.as_str() {
            "grant" => self.grants.push(vec![
                time,
                action,
                actor.unwrap_or("").to_owned(),
                record.subject.clone(),
                record.role.clone().unwrap_or_default(),
                record.until_unix.map(|u| u.to_string()).unwrap_or_default(),
                record.ticket.clone().unwrap_or_default(),
                record.reason.clone().unwrap_or_default(),
                event.decision.effect.to_string(),
                event.decision.policies.join(" "),
            ]),
            "roles_changed" => self.role_changes.push(vec![
                time,
                record.subject.clone(),
                list(&record.roles_before),
                list(&record.roles_after),
            ]),
            _ if action != "ssf:verification" => self.security_events.push(vec![
                time,
                action,
                record.subject.clone(),
                record.acted.join(", "),
            ]),
            _ => {}
        }
    }

    /// Revocations (by an admin, or by the IdP's security event), lifts, and what a revoked
    /// subject did after.
    fn count_revocation(&mut self, event: &View<'_>, actor: Option<&str>, denied: bool) {
        let time = event.time.as_ref();
        let action = event.action.as_deref().unwrap_or("");
        let succeeded = (200..300).contains(&event.outcome.status);
        let subject = event.resource.as_ref().map(|r| r.id.to_string());
        let acted = |what: &str| {
            event
                .lifecycle
                .as_ref()
                .is_some_and(|record| record.acted.iter().any(|a| a == what))
        };
        let by_idp =
            matches!(action, "ssf:account-disabled" | "ssf:account-purged") && acted("revoked");
        let lifted_by_idp = action == "ssf:account-enabled" && acted("lifted");
        match (action, subject) {
            (_, Some(subject)) if by_idp => {
                let record = event.lifecycle.as_ref();
                let last_allowed_before = self
                    .people
                    .get(&subject)
                    .and_then(|p| p.last_allowed.clone());
                let reason = record.and_then(|r| r.reason.clone()).unwrap_or_default();
                self.leavers.insert(
                    subject,
                    Leaver {
                        revoked_at: time.to_owned(),
                        by: format!(
                            "the IdP ({})",
                            record
                                .and_then(|r| r.transmitter.clone())
                                .unwrap_or_default()
                        ),
                        detail: format!("{action}: {reason}"),
                        last_allowed_before,
                        ..Leaver::default()
                    },
                );
            }
            (_, Some(subject)) if lifted_by_idp => {
                if let Some(leaver) = self.leavers.get_mut(&subject)
                    && leaver.lifted_at.is_none()
                {
                    leaver.lifted_at = Some(time.to_owned());
                }
            }
            ("revocation:create", Some(subject)) if succeeded => {
                let last_allowed_before = self
                    .people
                    .get(&subject)
                    .and_then(|p| p.last_allowed.clone())
                    .or_else(|| {
                        self.accounts
                            .get(&subject)
                            .and_then(|a| a.last_allowed.clone())
                    });
                self.leavers.insert(
                    subject,
                    Leaver {
                        revoked_at: time.to_owned(),
                        by: actor.unwrap_or("").to_owned(),
                        detail: event.decision.detail.as_deref().unwrap_or("").to_owned(),
                        last_allowed_before,
                        ..Leaver::default()
                    },
                );
            }
            ("revocation:lift", Some(subject)) if succeeded => {
                if let Some(leaver) = self.leavers.get_mut(&subject)
                    && leaver.lifted_at.is_none()
                {
                    leaver.lifted_at = Some(time.to_owned());
                }
            }
            _ => {}
        }
        if let Some(actor) = actor
            && !matches!(event.category.as_ref(), "revocation" | "lifecycle")
            && let Some(leaver) = self.leavers.get_mut(actor)
            && leaver.lifted_at.is_none()
        {
            if denied {
                leaver.refused_after += 1;
            } else {
                leaver.allowed_after += 1;
                leaver.last_allowed_after = Some(time.to_owned());
            }
        }
    }
}
