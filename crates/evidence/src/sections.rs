//! The sections: one per control of the access baseline's table, in its order, each built from
//! the tally of the trail, the policy set and the settings.

use std::collections::BTreeMap;

use invoiceguard_policy::PolicyEngine;

use crate::Setup;
use crate::matrix;
use crate::pack::{Chart, Section, Series, Table, percent};
use crate::tally::Tally;
use crate::trail::Trails;

/// Every section, in the baseline's order.
pub(crate) fn all(
    setup: &Setup,
    engine: &PolicyEngine,
    tally: &Tally,
    trails: &Trails,
) -> Vec<Section> {
    vec![
        mfa(setup, tally),
        sso(setup, tally),
        rbac(setup, engine, tally),
        authentication(setup, tally),
        sessions(setup, tally),
        admins(tally),
        leavers(tally),
        logging(setup, tally, trails),
        exports(engine, tally),
        integration(setup, engine, tally),
        encryption(setup),
        backup(setup, trails),
    ]
}

/// A section with its texts; tables and charts are added by the caller.
fn section(
    id: &'static str,
    control: &'static str,
    requirement: &'static str,
    shows: &str,
    source: &str,
) -> Section {
    Section {
        id,
        control,
        requirement,
        shows: shows.to_owned(),
        source: source.to_owned(),
        findings: Vec::new(),
        attention: false,
        tables: Vec::new(),
        charts: Vec::new(),
    }
}

fn mfa(setup: &Setup, tally: &Tally) -> Section {
    let mut s = section(
        "mfa",
        "MFA (multi-factor authentication)",
        "mandatory for all interactive users",
        "How many of each person's requests came with a multi-factor login, and every login without one.",
        &format!(
            "the trail (actor.mfa of each person's requests); MFA means amr in [{}] or acr in [{}] ([authn] mfa_amr, mfa_acr)",
            setup.mfa_amr.join(", "),
            setup.mfa_acr.join(", ")
        ),
    );
    let (coverage, chart) = mfa_coverage(tally);
    let all: u64 = tally.people.values().map(|p| p.requests).sum();
    let with: u64 = tally.people.values().map(|p| p.with_mfa).sum();
    let mut without = Table::new(
        "logins_without_mfa",
        "Logins without MFA (person, method, address)",
        &[
            "person",
            "method",
            "source address",
            "first",
            "last",
            "requests",
            "denied",
        ],
    );
    for login in tally
        .logins
        .callers()
        .filter(|l| l.kind == "user" && !l.mfa)
    {
        without.row(vec![
            login.actor.clone(),
            login.method.clone(),
            login.source_ip.clone(),
            login.first.clone(),
            login.last.clone(),
            login.requests.to_string(),
            login.denied.to_string(),
        ]);
    }
    s.findings.push(format!(
        "{with} of {all} requests by people ({} %) came with a multi-factor login; {} login(s) without MFA.",
        percent(with, all),
        without.rows.len()
    ));
    s.attention = !without.rows.is_empty();
    s.tables = vec![coverage, without];
    s.charts.push(chart);
    s
}

/// Each person's requests with and without MFA, as a table and a chart.
fn mfa_coverage(tally: &Tally) -> (Table, Chart) {
    let mut coverage = Table::new(
        "mfa_coverage",
        "MFA coverage per person",
        &[
            "person",
            "requests",
            "with MFA",
            "without MFA",
            "coverage %",
            "step-ups demanded",
        ],
    );
    let mut chart = Chart {
        id: "mfa_chart",
        title: "MFA coverage per person (% of requests)".to_owned(),
        labels: Vec::new(),
        series: vec![Series {
            name: "with MFA",
            values: Vec::new(),
        }],
        unit: "%",
    };
    for (person, p) in &tally.people {
        coverage.row(vec![
            person.clone(),
            p.requests.to_string(),
            p.with_mfa.to_string(),
            (p.requests - p.with_mfa).to_string(),
            percent(p.with_mfa, p.requests),
            p.step_ups.to_string(),
        ]);
        chart.labels.push(person.clone());
        chart.series[0]
            .values
            .push(p.with_mfa as f64 * 100.0 / p.requests.max(1) as f64);
    }
    (coverage, chart)
}

fn sso(setup: &Setup, tally: &Tally) -> Section {
    let mut s = section(
        "sso",
        "SSO",
        "central identity management, blocking in one place",
        "Who logged in, when and how: every caller by method, MFA and address; refused credentials by address.",
        &format!(
            "the trail; tokens trusted only from [{}] ([authn] issuer, also_trust)",
            setup.issuers.join(", ")
        ),
    );
    let mut logins = Table::new(
        "logins",
        "Who logged in, when and how",
        &[
            "caller",
            "type",
            "method",
            "MFA",
            "source address",
            "first",
            "last",
            "requests",
            "denied",
        ],
    );
    for login in tally.logins.callers() {
        logins.row(vec![
            login.actor.clone(),
            login.kind.clone(),
            login.method.clone(),
            if login.mfa { "yes" } else { "no" }.to_owned(),
            login.source_ip.clone(),
            login.first.clone(),
            login.last.clone(),
            login.requests.to_string(),
            login.denied.to_string(),
        ]);
    }
    let mut failed = Table::new(
        "failed_logins",
        "Refused credentials by address",
        &["source address", "reasons", "first", "last", "refusals"],
    );
    for f in tally.logins.failed() {
        failed.row(vec![
            f.source_ip.clone(),
            f.reasons.join("; "),
            f.first.clone(),
            f.last.clone(),
            f.count.to_string(),
        ]);
    }
    let refused: u64 = tally.logins.failed().map(|f| f.count).sum();
    s.findings.push(format!(
        "{} caller(s) authenticated by the IdP or their integration credential; {refused} refused credential(s) from {} address(es).",
        tally.people.len() + tally.accounts.len(),
        failed.rows.len()
    ));
    s.tables = vec![logins, failed];
    s
}

fn rbac(setup: &Setup, engine: &PolicyEngine, tally: &Tally) -> Section {
    let mut s = section(
        "rbac",
        "RBAC",
        "roles documented, permissions reviewed",
        "The role matrix, derived by asking the policies about every role and route (a person holding only that role, on an invoice someone else created); the decision cases with their results (the prohibited combinations among them); segregation-of-duties refusals seen; the policy versions that decided.",
        &format!(
            "the policy folder {} (version {}) and its tests/; the trail",
            setup.policy_dir.display(),
            engine.version()
        ),
    );
    let (matrix, roles) = matrix::roles(engine);
    let cases = invoiceguard_policy::run_cases(engine, &setup.policy_dir.join("tests"));
    let mut table = Table::new(
        "decision_cases",
        "Decision cases (prohibited combinations among them)",
        &["file", "case", "result"],
    );
    let mut failed = 0;
    for case in &cases {
        let (file, name) = case.name.split_once(": ").unwrap_or(("", &case.name));
        failed += usize::from(case.failure.is_some());
        table.row(vec![
            file.to_owned(),
            name.to_owned(),
            case.failure
                .as_ref()
                .map_or("passed".to_owned(), |why| format!("FAILED: {why}")),
        ]);
    }
    let mut sod = Table::new(
        "sod_denials",
        "Segregation-of-duties refusals",
        &["time", "actor", "action", "resource", "policies"],
    );
    sod.rows.clone_from(&tally.sod_denials);
    let mut versions = Table::new(
        "policy_versions",
        "Policy-set versions that decided",
        &["version", "first decision", "last decision", "decisions"],
    );
    for (version, span) in &tally.versions {
        versions.row(vec![
            version.clone(),
            span.first.clone(),
            span.last.clone(),
            span.count.to_string(),
        ]);
    }
    let mut changes = Table::new(
        "policy_changes",
        "Policy sets loaded and reloads (applied or refused)",
        &["time", "event", "decision", "detail"],
    );
    for row in tally
        .administration
        .iter()
        .filter(|r| r[2].starts_with("policy:"))
    {
        changes.row(vec![
            row[0].clone(),
            row[2].clone(),
            row[4].clone(),
            row[6].clone(),
        ]);
    }
    s.findings.push(format!(
        "{} roles × {} routes; {} of {} decision cases passed; {} segregation-of-duties refusal(s); {} policy version(s) decided in the period; {} policy load(s) or reload(s) recorded.",
        roles.len(),
        matrix.rows.len(),
        cases.len() - failed,
        cases.len(),
        sod.rows.len(),
        versions.rows.len(),
        changes.rows.len()
    ));
    s.attention = failed > 0 || cases.is_empty();
    s.tables = vec![matrix, table, sod, versions, changes];
    s
}

fn authentication(setup: &Setup, tally: &Tally) -> Section {
    let mut s = section(
        "authentication",
        "Password and authentication policy",
        "modern principles, prohibited passwords, brute force protection",
        "The lockout rules in force and every lockout in the period. Passwords themselves are the IdP's: the gateway never sees one.",
        "the configuration ([limits]) and the trail (429 refusals whose detail says `locked out`)",
    );
    let mut rules = Table::new(
        "lockout_rules",
        "Lockout rules in force",
        &["rule", "value"],
    );
    rules.row(vec![
        "failed authentications per address".to_owned(),
        setup.failed_auth_per_ip.to_string(),
    ]);
    rules.row(vec![
        "failed authentications per subject".to_owned(),
        setup.failed_auth_per_subject.to_string(),
    ]);
    rules.row(vec![
        "window (seconds)".to_owned(),
        setup.failed_auth_window_s.to_string(),
    ]);
    let mut lockouts = Table::new(
        "lockouts",
        "Lockouts",
        &["locked", "who", "first refusal", "last refusal", "refusals"],
    );
    for ((kind, who), span) in &tally.lockouts {
        lockouts.row(vec![
            kind.clone(),
            who.clone(),
            span.first.clone(),
            span.last.clone(),
            span.count.to_string(),
        ]);
    }
    s.findings.push(format!(
        "An address is locked out after {} failed authentications, a subject after {}, for {} s; {} lockout(s) in the period.",
        setup.failed_auth_per_ip,
        setup.failed_auth_per_subject,
        setup.failed_auth_window_s,
        lockouts.rows.len()
    ));
    s.tables = vec![rules, lockouts];
    s
}

fn sessions(setup: &Setup, tally: &Tally) -> Section {
    let mut s = section(
        "sessions",
        "Session management",
        "inactivity timeout, secure cookie setting",
        "How people stay logged in: the browser session's cookie and timeouts as configured, and the sessions' life cycle in the period — logins, logouts, expiries, step-ups, device changes and cross-site requests refused. API callers carry their own credential on every request; their tokens' lifetimes are set at the IdP.",
        "the configuration ([session], [authn]) and the trail (session:* actions, decision.detail)",
    );
    let mut settings = Table::new(
        "session_settings",
        "Session settings",
        &["setting", "value"],
    );
    let mut row = |name: &str, value: String| settings.row(vec![name.to_owned(), value]);
    match &setup.session {
        Some(session) => {
            row(
                "browser sessions",
                format!("on, at {}", session.external_url),
            );
            row("cookie", session.cookie.clone());
            row("inactivity (idle) timeout", minutes(session.idle_timeout_s));
            row("absolute timeout", minutes(session.absolute_timeout_s));
            row(
                "after a timeout",
                "a new login at the IdP (prompt=login)".to_owned(),
            );
            row(
                "session used from another device",
                session.on_device_change.clone(),
            );
            row(
                "credentialed cross-origin requests",
                if session.cors_origins.is_empty() {
                    "none".to_owned()
                } else {
                    session.cors_origins.join(", ")
                },
            );
            if session.idle_timeout_s > 1800 {
                s.findings.push(format!(
                    "The inactivity timeout ({}) is longer than the 30 minutes NIST SP 800-63B allows at AAL2.",
                    minutes(session.idle_timeout_s)
                ));
                s.attention = true;
            }
            if session.absolute_timeout_s > 12 * 3600 {
                s.findings.push(format!(
                    "The absolute timeout ({}) is longer than the 12 hours NIST SP 800-63B allows at AAL2.",
                    minutes(session.absolute_timeout_s)
                ));
                s.attention = true;
            }
        }
        None => {
            row(
                "browser sessions",
                "off ([session] not configured)".to_owned(),
            );
            s.findings.push("Browser sessions are not configured: the gateway accepts only credentials sent with each request (tokens, API keys, certificates), and token lifetimes are set at the IdP.".to_owned());
            s.attention = true;
        }
    }
    row(
        "token type required (require_typ)",
        setup
            .require_typ
            .clone()
            .unwrap_or_else(|| "any".to_owned()),
    );
    row("clock leeway (seconds)", setup.leeway_s.to_string());
    let t = &tally.sessions;
    let mut life = Table::new(
        "session_life_cycle",
        "Sessions in the period",
        &["event", "count"],
    );
    for (name, count) in [
        ("logins", t.logins),
        ("… with MFA", t.logins_with_mfa),
        ("logins refused (state, code or ID token)", t.logins_refused),
        ("logouts by the person", t.logouts),
        ("logouts from the IdP (back-channel)", t.idp_logouts),
        ("ended by the inactivity timeout", t.expired_idle),
        ("ended by the absolute timeout", t.expired_absolute),
        (
            "sent to log in again for a sensitive operation (step-up)",
            t.step_ups,
        ),
    ] {
        life.row(vec![name.to_owned(), count.to_string()]);
    }
    let mut incidents = Table::new(
        "session_incidents",
        "Device changes and cross-site requests refused",
        &["time", "person", "what", "request", "detail"],
    );
    for incident in &t.incidents {
        incidents.row(incident.clone());
    }
    if !t.incidents.is_empty() {
        s.findings.push(format!(
            "{} session incident(s): a session used from another device, or a cross-site request refused.",
            t.incidents.len()
        ));
        s.attention = true;
    }
    s.tables = vec![settings, life, incidents];
    s
}

/// Seconds as minutes (or hours) for people.
fn minutes(seconds: u64) -> String {
    match seconds {
        s if s % 3600 == 0 && s >= 3600 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn admins(tally: &Tally) -> Section {
    let mut s = section(
        "admins",
        "Managing admin accounts",
        "separate admin, minimum number, \"break-glass\" control",
        "Who held the admin role, every administration act (settings, users and roles, revocations, credential reloads), and every break-glass use with its stated reason.",
        "the trail (actor.roles, categories administration and revocation, break_glass_reason)",
    );
    let mut list = Table::new(
        "admin_list",
        "People with the admin role",
        &[
            "admin",
            "first request",
            "last request",
            "requests",
            "also approver",
        ],
    );
    for (admin, span) in &tally.admins {
        let approver = tally
            .people
            .get(admin)
            .is_some_and(|p| p.roles.contains("approver"));
        list.row(vec![
            admin.clone(),
            span.first.clone(),
            span.last.clone(),
            span.count.to_string(),
            if approver { "yes" } else { "no" }.to_owned(),
        ]);
    }
    let mut acts = Table::new(
        "administration",
        "Administration events",
        &[
            "time", "actor", "action", "resource", "decision", "status", "detail",
        ],
    );
    acts.rows.clone_from(&tally.administration);
    let mut glass = Table::new(
        "break_glass",
        "Break-glass uses",
        &[
            "time", "actor", "reason", "action", "path", "decision", "status",
        ],
    );
    glass.rows.clone_from(&tally.break_glass);
    let both = list.rows.iter().filter(|r| r[4] == "yes").count();
    s.findings.push(format!(
        "{} admin(s) seen ({both} also holding the approver role, which the policies refuse to let approve); {} administration event(s); {} break-glass use(s).",
        list.rows.len(),
        acts.rows.len(),
        glass.rows.len()
    ));
    s.attention = both > 0 || !glass.rows.is_empty();
    s.tables = vec![list, acts, glass];
    s
}

fn leavers(tally: &Tally) -> Section {
    let mut s = section(
        "leavers",
        "Joiner/Mover/Leaver process",
        "admission, transfer, and discharge with SLA",
        "Every revocation in the period — by an admin, or by the IdP's security event (a leaver blocked on every replica) — the subject's last allowed request before it, and anything allowed after it (there should be nothing); the IdP's other security events and what the gateway did; every time-limited grant with its ticket (given, refused, lifted, expired); every role change seen at the IdP.",
        "the trail (revocation events of the admin listener, lifecycle events: security events, grants, role changes; and the revoked subjects' requests)",
    );
    let mut table = Table::new(
        "revocations",
        "Revocations and what the subject could still do",
        &[
            "subject",
            "revoked at",
            "by",
            "detail",
            "last allowed before",
            "allowed after",
            "last allowed after",
            "refused after",
            "lifted at",
        ],
    );
    let mut leaked = 0;
    for (subject, l) in &tally.leavers {
        leaked += l.allowed_after;
        table.row(vec![
            subject.clone(),
            l.revoked_at.clone(),
            l.by.clone(),
            l.detail.clone(),
            l.last_allowed_before.clone().unwrap_or_default(),
            l.allowed_after.to_string(),
            l.last_allowed_after.clone().unwrap_or_default(),
            l.refused_after.to_string(),
            l.lifted_at.clone().unwrap_or_default(),
        ]);
    }
    s.findings.push(format!(
        "{} subject(s) revoked; {leaked} request(s) allowed after a revocation took effect.",
        table.rows.len()
    ));
    let mut events = Table::new(
        "security_events",
        "The IdP's security events (Shared Signals)",
        &["time", "event", "subject", "done"],
    );
    events.rows.clone_from(&tally.security_events);
    let mut grants = Table::new(
        "grants",
        "Time-limited role grants",
        &[
            "time",
            "act",
            "granter",
            "subject",
            "role",
            "until (Unix)",
            "ticket",
            "reason",
            "effect",
            "policies",
        ],
    );
    grants.rows.clone_from(&tally.grants);
    let mut changes = Table::new(
        "role_changes",
        "Role changes seen at the IdP",
        &["time", "subject", "roles before", "roles after"],
    );
    changes.rows.clone_from(&tally.role_changes);
    let given = tally
        .grants
        .iter()
        .filter(|row| row[1] == "grant:create" && row[8] == "allow")
        .count();
    let refused = tally
        .grants
        .iter()
        .filter(|row| row[1] == "grant:create" && row[8] == "deny")
        .count();
    s.findings.push(format!(
        "{} security event(s) from the IdP; {given} grant(s) given, {refused} refused by the policies; {} role change(s) seen.",
        events.rows.len(),
        changes.rows.len()
    ));
    s.attention = leaked > 0 || refused > 0;
    s.tables = vec![table, events, grants, changes];
    s
}

fn logging(setup: &Setup, tally: &Tally, trails: &Trails) -> Section {
    let mut s = section(
        "logging",
        "Logging and audit trail",
        "access, authorization, export, deletion logged",
        "Every request's event by category, requests and denials over time, each trail's hash chain verified, and each sink's delivery.",
        &format!(
            "the trails (chain {}), their sinks' cursors; SIEM rules: deploy/siem/rules",
            if setup.chain_keyed {
                "keyed with HMAC-SHA256"
            } else {
                "SHA-256"
            }
        ),
    );
    let mut categories = Table::new(
        "categories",
        "Events by category",
        &["category", "allowed", "denied"],
    );
    for (category, (allowed, denied)) in &tally.categories {
        categories.row(vec![
            category.clone(),
            allowed.to_string(),
            denied.to_string(),
        ]);
    }
    let (chains, broken) = chain_table(trails);
    let delivery = delivery_table(setup, trails);
    let mut incidents = Table::new(
        "trail_events",
        "The trail's own events (spool repairs, sinks lagging and recovered)",
        &["time", "instance", "event", "severity", "detail"],
    );
    incidents.rows.clone_from(&tally.trail_events);
    let lagged = tally
        .trail_events
        .iter()
        .filter(|r| r[2] == "audit:sink_lagging")
        .count();
    let pending: u64 = trails.deliveries.iter().map(|d| d.pending).sum();
    let delivered = if setup.sinks.is_empty() {
        "no audit sink is configured: the trail is on the gateway's disk only".to_owned()
    } else {
        format!("{pending} event(s) not yet delivered to a sink")
    };
    s.findings.push(format!(
        "{} events in the period; {} of {} trail(s) verified intact; {delivered}; {lagged} time(s) a sink lagged; sensitive actions recorded before they are forwarded: {}; when the spool cannot record, requests are {}.",
        tally.events,
        trails.checked.len() - broken,
        trails.checked.len(),
        if setup.sensitive_actions.is_empty() {
            "none".to_owned()
        } else {
            setup.sensitive_actions.join(", ")
        },
        if setup.audit_fail_open {
            "served (fail_open)"
        } else {
            "refused"
        }
    ));
    s.attention = broken > 0 || setup.sinks.is_empty() || setup.audit_fail_open;
    s.charts.push(over_time(tally));
    s.tables = vec![categories, chains, delivery, incidents];
    s
}

/// Each trail's verification, and how many are broken.
fn chain_table(trails: &Trails) -> (Table, usize) {
    let mut chains = Table::new(
        "chain_verification",
        "Chain verification",
        &[
            "trail",
            "events",
            "first seq",
            "last seq",
            "intact",
            "end anchored",
            "problems",
        ],
    );
    let mut broken = 0;
    for c in &trails.checked {
        broken += usize::from(!c.intact);
        chains.row(vec![
            c.path.clone(),
            c.events.to_string(),
            c.seq_range.map(|r| r.0.to_string()).unwrap_or_default(),
            c.seq_range.map(|r| r.1.to_string()).unwrap_or_default(),
            if c.intact { "yes" } else { "NO" }.to_owned(),
            if c.anchored { "yes" } else { "no" }.to_owned(),
            c.problems
                .iter()
                .chain(&c.notes)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        ]);
    }
    (chains, broken)
}

/// Each sink's undelivered events, per spool.
fn delivery_table(setup: &Setup, trails: &Trails) -> Table {
    let mut delivery = Table::new(
        "delivery",
        "Delivery to the sinks",
        &["spool", "sink", "kind", "events not yet delivered"],
    );
    for d in &trails.deliveries {
        let kind = setup
            .sinks
            .iter()
            .find(|(name, _)| *name == d.sink)
            .map_or("", |(_, kind)| kind.as_str());
        delivery.row(vec![
            d.spool.clone(),
            d.sink.clone(),
            kind.to_owned(),
            d.pending.to_string(),
        ]);
    }
    delivery
}

/// Requests and denials per hour, or per day over more than two days.
fn over_time(tally: &Tally) -> Chart {
    let by_day = tally.hours.len() > 48;
    let mut buckets: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (hour, (requests, denied)) in &tally.hours {
        let key = if by_day {
            hour.get(..10).unwrap_or(hour).to_owned()
        } else {
            format!("{hour}h")
        };
        let bucket = buckets.entry(key).or_default();
        bucket.0 += requests;
        bucket.1 += denied;
    }
    Chart {
        id: "requests_chart",
        title: format!(
            "Requests and denials per {}",
            if by_day { "day" } else { "hour (UTC)" }
        ),
        labels: buckets.keys().cloned().collect(),
        series: vec![
            Series {
                name: "allowed",
                values: buckets.values().map(|(r, d)| (r - d) as f64).collect(),
            },
            Series {
                name: "denied",
                values: buckets.values().map(|(_, d)| *d as f64).collect(),
            },
        ],
        unit: "requests",
    }
}

fn exports(engine: &PolicyEngine, tally: &Tally) -> Section {
    let mut s = section(
        "exports",
        "Control of exports",
        "mass export restriction, watermark, approval (if necessary)",
        "Every export with its rows, the bulk ones (over 500 rows) marked, each person's totals, and the daily quotas the policy folder sets.",
        "the trail (export:* actions and outcome.export_rows); entities.toml and limits.cedar of the policy folder",
    );
    let mut all = Table::new(
        "exports",
        "Exports",
        &[
            "time", "actor", "action", "rows", "bulk", "decision", "status", "policies",
        ],
    );
    all.rows.clone_from(&tally.exports);
    let mut people = Table::new(
        "exports_per_person",
        "Exports per person",
        &["person", "exports", "rows", "bulk", "denied"],
    );
    let mut chart = Chart {
        id: "exports_chart",
        title: "Rows exported per person".to_owned(),
        labels: Vec::new(),
        series: vec![Series {
            name: "rows",
            values: Vec::new(),
        }],
        unit: "rows",
    };
    for (who, e) in &tally.exporters {
        people.row(vec![
            who.clone(),
            e.exports.to_string(),
            e.rows.to_string(),
            e.bulk.to_string(),
            e.denied.to_string(),
        ]);
        chart.labels.push(who.clone());
        chart.series[0].values.push(e.rows as f64);
    }
    let mut quotas = Table::new(
        "export_quotas",
        "Daily export quotas and approval limits (entities.toml)",
        &[
            "kind",
            "name",
            "export rows per day",
            "exports per day",
            "approval limit",
        ],
    );
    for (kind, name, limits) in engine.limit_entries() {
        quotas.row(vec![
            kind.to_owned(),
            name,
            limits.export_rows_per_day.to_string(),
            limits.exports_per_day.to_string(),
            limits.approval_limit.to_string(),
        ]);
    }
    let bulk: u64 = tally.exporters.values().map(|e| e.bulk).sum();
    let rows: u64 = tally.exporters.values().map(|e| e.rows).sum();
    s.findings.push(format!(
        "{} export request(s) by {} person(s) or account(s), {rows} rows in all, {bulk} bulk. Approvals and watermarks are not built yet.",
        all.rows.len(),
        people.rows.len()
    ));
    s.charts.push(chart);
    s.tables = vec![people, all, quotas];
    s
}

fn integration(setup: &Setup, engine: &PolicyEngine, tally: &Tally) -> Section {
    let mut s = section(
        "integration",
        "Integration accounts / API",
        "service account, scope limit, key rotation",
        "Every integration account the configuration holds: its credential (API-key fingerprints, or the certificate's DNS name), scopes, what the policies let those scopes do, and its use in the period; accounts seen in the trail but not configured (IdP client-credential tokens) too.",
        &format!(
            "the configuration {} ([[authn.api_keys]], [[authn.mtls_accounts]]), the policy folder, the trail",
            setup.config_file.display()
        ),
    );
    let mut table = Table::new(
        "integration_accounts",
        "Integration accounts",
        &[
            "account",
            "credential",
            "fingerprints or DNS name",
            "scopes",
            "actions allowed",
            "requests",
            "denied",
            "errors",
            "error rate %",
            "first use",
            "last use",
        ],
    );
    let mut names: Vec<(String, &'static str, Vec<String>, Vec<String>)> = setup
        .accounts
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                a.kind,
                a.credentials.clone(),
                a.scopes.clone(),
            )
        })
        .collect();
    for name in tally.accounts.keys() {
        if !names.iter().any(|(n, ..)| n == name) {
            names.push((name.clone(), "idp_token", Vec::new(), Vec::new()));
        }
    }
    let mut unused = 0;
    for (name, kind, credentials, scopes) in names {
        let used = tally.accounts.get(&name);
        unused += usize::from(used.is_none());
        let span = used.map(|u| u.span.clone()).unwrap_or_default();
        let (denied, errors) = used.map_or((0, 0), |u| (u.denied, u.errors));
        table.row(vec![
            name.clone(),
            kind.to_owned(),
            credentials.join(" "),
            scopes.join(" "),
            if kind == "idp_token" {
                "(scopes of its tokens)".to_owned()
            } else {
                matrix::account_actions(engine, &name, &scopes).join(" ")
            },
            span.count.to_string(),
            denied.to_string(),
            errors.to_string(),
            percent(errors, span.count),
            span.first,
            span.last,
        ]);
    }
    s.findings.push(format!(
        "{} integration account(s); {unused} not used in the period (a candidate for removal). The configuration holds key hashes only: a key's age is the date its hash was added, which the configuration's history shows.",
        table.rows.len()
    ));
    s.tables = vec![table];
    s
}

fn encryption(setup: &Setup) -> Section {
    let mut s = section(
        "encryption",
        "Encryption",
        "TLS, data storage protection on the provider side",
        "Whether each hop is encrypted, as configured.",
        "the configuration ([listen.tls], [listen] client_ca_file, [upstream] url)",
    );
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut table = Table::new(
        "encryption",
        "Encryption in transit and at rest",
        &["hop", "encrypted"],
    );
    table.row(vec![
        "clients to the gateway (TLS)".to_owned(),
        yes(setup.listener_tls),
    ]);
    table.row(vec![
        "client certificates asked for (mTLS)".to_owned(),
        yes(setup.client_ca),
    ]);
    table.row(vec![
        "gateway to the invoicing API (HTTPS)".to_owned(),
        yes(setup.upstream_https),
    ]);
    let at_rest = match &setup.spool_key_id {
        Some(id) => format!("yes (AES-256-GCM, a data key per segment, wrapped by key {id})"),
        None => "no ([audit] encryption_key_file is not set: plain files, 0600)".to_owned(),
    };
    table.row(vec!["audit spool at rest".to_owned(), at_rest]);
    if setup.archive.is_some() {
        table.row(vec![
            "audit archives at rest".to_owned(),
            if setup.spool_key_id.is_some() {
                "yes (archived as sealed)".to_owned()
            } else {
                "no (archived as written)".to_owned()
            },
        ]);
    }
    s.attention = !setup.listener_tls || !setup.upstream_https || setup.spool_key_id.is_none();
    s.findings.push(format!(
        "TLS to clients: {}; to the invoicing API: {}; the audit spool sealed at rest: {}.",
        yes(setup.listener_tls),
        yes(setup.upstream_https),
        yes(setup.spool_key_id.is_some())
    ));
    s.tables = vec![table];
    s
}

fn backup(setup: &Setup, trails: &Trails) -> Section {
    let mut s = section(
        "backup",
        "Backup and archiving",
        "access protected, restore tested",
        "The archives the gateway keeps of its delivered trail (signed, compressed, retained), and the restore test report: what was restored, how many events, their hashes, and whether the archives and the restored trail verified.",
        "the configuration ([audit.archive]) and the restore test report (`invoiceguard audit restore`, given with --restore-report)",
    );
    let mut archive = Table::new("archive", "Archives", &["setting", "value"]);
    match &setup.archive {
        Some((dir, keep_days, max_bytes)) => {
            archive.row(vec!["folder".to_owned(), dir.clone()]);
            archive.row(vec!["kept for (days)".to_owned(), keep_days.to_string()]);
            archive.row(vec!["at most (bytes)".to_owned(), max_bytes.to_string()]);
            archive.row(vec![
                "each archive".to_owned(),
                "zstd, a manifest signed with Ed25519 (seq range, chain hashes, SHA-256)"
                    .to_owned(),
            ]);
        }
        None => archive.row(vec![
            "archives".to_owned(),
            "none: delivered segments are deleted ([audit.archive] is not set)".to_owned(),
        ]),
    }
    let mut report = Table::new("restore_test", "Restore test report", &["item", "value"]);
    let events: u64 = trails.checked.iter().map(|c| c.events).sum();
    match &setup.restore_report {
        Some((file, restored)) => {
            let (first, last) = restored.seq_range.unwrap_or_default();
            for (item, value) in [
                ("report", file.clone()),
                ("restored at", restored.restored_at.clone()),
                ("from", restored.from.clone()),
                ("into", restored.to.clone()),
                (
                    "time range",
                    format!("{} to {}", restored.from_time, restored.to_time),
                ),
                ("archives", restored.archives.len().to_string()),
                ("events", restored.events.to_string()),
                ("seq", format!("{first} to {last}")),
                (
                    "last event's hash",
                    restored.head.clone().unwrap_or_default(),
                ),
                ("archives verified", restored.archives_verified.to_string()),
                (
                    "restored trail verified",
                    restored.restored_verified.to_string(),
                ),
                ("problems", restored.problems.join("; ")),
            ] {
                report.row(vec![item.to_owned(), value]);
            }
            for archive in &restored.archives {
                report.row(vec![
                    format!("archive {}", archive.file),
                    format!(
                        "seq {} to {}, {} events, sha256 {}",
                        archive.first_seq, archive.last_seq, archive.events, archive.sha256
                    ),
                ]);
            }
            let passed = restored.archives_verified && restored.restored_verified;
            s.findings.push(format!(
                "Restore test of {}: {} event(s), seq {first} to {last}, {}.",
                restored.restored_at,
                restored.events,
                if passed {
                    "archives and restored trail verified"
                } else {
                    "FAILED"
                }
            ));
            s.attention = !passed || setup.archive.is_none();
        }
        None => {
            s.findings.push(format!(
                "No restore test report given (run `invoiceguard audit restore` and pass its report with --restore-report); the {events} event(s) of the trails read were verified in place."
            ));
            s.attention = true;
        }
    }
    s.tables = vec![archive, report];
    s
}

/// A candidate policy set replayed over the period's decisions (`policy replay`).
pub(crate) fn replay(report: &crate::replay::Replay) -> Section {
    let mut s = section(
        "policy_change",
        "Change management of the access rules",
        "a change to the rules is tested before it goes live",
        "What a candidate policy set would have decided differently over the period's real traffic: every authorization the trail recorded (with its inputs), decided again with the candidate.",
        &format!(
            "the trail (decision.inputs), replayed with candidate set {}",
            report.candidate_version
        ),
    );
    let changed = report.replayed - report.unchanged;
    s.findings.push(format!(
        "{} decision(s) replayed: {} unchanged, {changed} changed; {} event(s) not replayable (recorded without inputs).",
        report.replayed, report.unchanged, report.not_replayable
    ));
    s.attention = changed > 0;
    let mut table = Table::new(
        "policy_change_impact",
        "Decisions that would change",
        &[
            "change",
            "count",
            "action",
            "principal",
            "roles",
            "decided now by",
            "decided then by",
            "examples",
        ],
    );
    for group in &report.changes {
        table.row(vec![
            group.change.to_owned(),
            group.count.to_string(),
            group.action.clone(),
            group.principal.clone(),
            group.roles.join(", "),
            group.policies.join(", "),
            group.recorded_policies.join(", "),
            group.examples.join("; "),
        ]);
    }
    s.tables = vec![table];
    s
}
