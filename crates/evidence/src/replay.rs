//! Replay: every recorded authorization decided again with a candidate policy set, before it goes
//! live — "what would this change have decided over last month's real traffic?". Each event's
//! `decision.inputs` (the principal, the resource's facts and the context as Cedar got them) is
//! decided with the candidate's routes, policies and entities; the decisions that would change,
//! allow→deny and deny→allow, are grouped by the candidate's deciding policies, the action, the
//! roles and the principal, with counts and example requests. Events without inputs (written
//! before they were recorded, or of another inputs version) are counted as not replayable, never
//! guessed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use invoiceguard_audit::query::{self, Bound, Filter};
use invoiceguard_audit::{DECISION_INPUTS_VERSION, DecisionInputs};
use invoiceguard_authn::{AuthMethod, Principal, PrincipalKind};
use invoiceguard_policy::{Decision, ExportFacts, PolicyEngine, RequestFacts, ResourceFacts};
use serde::Serialize;

/// How many example requests a group keeps.
const EXAMPLES: usize = 3;

/// What a replay found.
#[derive(Debug, Default, Serialize)]
pub struct Replay {
    /// The candidate set's version.
    pub candidate_version: String,
    /// Authorizations decided again.
    pub replayed: u64,
    /// Of those, decided the same way.
    pub unchanged: u64,
    /// Events whose decision cannot be replayed (no inputs recorded, or another version).
    pub not_replayable: u64,
    /// The changed decisions, grouped.
    pub changes: Vec<ChangeGroup>,
}

/// Changed decisions that share a direction, the candidate's deciding policies, an action, the
/// roles and the principal.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChangeGroup {
    /// `allow→deny` or `deny→allow`.
    pub change: &'static str,
    /// The policies that decide it now (the candidate's), or `(default deny)`, `(no route)`.
    pub policies: Vec<String>,
    /// The policies that decided it in the trail.
    pub recorded_policies: Vec<String>,
    /// The Cedar action.
    pub action: String,
    /// The principal's roles.
    pub roles: Vec<String>,
    /// The principal.
    pub principal: String,
    /// How many requests.
    pub count: u64,
    /// Some of them: time, request id, method and path.
    pub examples: Vec<String>,
}

/// What groups changed decisions: the direction, the deciding policies, the action, the roles
/// and the principal.
type GroupKey = (String, Vec<String>, String, Vec<String>, String);

/// Replays every decided request of `trails` (within `from`..`to`) with `candidate`.
pub fn replay(
    candidate: &PolicyEngine,
    trails: &[PathBuf],
    from: Option<Bound>,
    to: Option<Bound>,
) -> std::io::Result<Replay> {
    let filter = Filter {
        from,
        to,
        ..Filter::default()
    };
    let mut report = Replay {
        candidate_version: candidate.version().to_owned(),
        ..Replay::default()
    };
    let mut groups: BTreeMap<GroupKey, ChangeGroup> = BTreeMap::new();
    query::scan(trails, &filter, |line, view| {
        // Only requests Cedar decided: a route's, with its decision's reason one of Cedar's.
        let decided = view.action.is_some()
            && matches!(
                view.decision.reason.as_ref(),
                "policy" | "step_up" | "approval_required"
            );
        if !decided {
            return;
        }
        let Some(inputs) = inputs_of(line) else {
            report.not_replayable += 1;
            return;
        };
        report.replayed += 1;
        let was_allowed = view.decision.effect == "allow";
        let (now_allowed, policies) = decide(candidate, view, &inputs);
        if was_allowed == now_allowed {
            report.unchanged += 1;
            return;
        }
        let change = if was_allowed {
            "allow→deny"
        } else {
            "deny→allow"
        };
        let action = view.action.as_deref().unwrap_or_default().to_owned();
        let key = (
            change.to_owned(),
            policies.clone(),
            action.clone(),
            inputs.roles.clone(),
            inputs.principal.clone(),
        );
        let group = groups.entry(key).or_insert_with(|| ChangeGroup {
            change,
            policies,
            recorded_policies: view
                .decision
                .policies
                .iter()
                .map(|p| p.to_string())
                .collect(),
            action,
            roles: inputs.roles.clone(),
            principal: inputs.principal.clone(),
            count: 0,
            examples: Vec::new(),
        });
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(format!(
                "{} {} {} {}",
                view.time, view.request_id, view.request.method, view.request.path
            ));
        }
    })?;
    let mut changes: Vec<ChangeGroup> = groups.into_values().collect();
    changes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.action.cmp(&b.action)));
    report.changes = changes;
    Ok(report)
}

/// The recorded inputs of an event line, when it has them in the version this build reads.
fn inputs_of(line: &[u8]) -> Option<DecisionInputs> {
    #[derive(serde::Deserialize)]
    struct Line {
        decision: DecisionPart,
    }
    #[derive(serde::Deserialize)]
    struct DecisionPart {
        inputs: Option<serde_json::Value>,
    }
    let inputs = serde_json::from_slice::<Line>(line).ok()?.decision.inputs?;
    if inputs.get("version").and_then(serde_json::Value::as_u64)
        != Some(u64::from(DECISION_INPUTS_VERSION))
    {
        return None;
    }
    serde_json::from_value(inputs).ok()
}

/// The candidate's decision on a recorded request: the route its method and path find in the
/// candidate's routes (none: denied, as the gateway would), on the recorded facts.
fn decide(
    candidate: &PolicyEngine,
    view: &query::View<'_>,
    inputs: &DecisionInputs,
) -> (bool, Vec<String>) {
    let segments: Vec<String> = view
        .request
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let Some(route) = candidate.routes().find(&view.request.method, &segments) else {
        return (false, vec!["(no route)".to_owned()]);
    };
    let decision = candidate.authorize(&principal(inputs), &route, &facts(inputs));
    let policies = match (&decision, decision.policies.is_empty()) {
        (d, true) if !d.is_allowed() => vec!["(default deny)".to_owned()],
        (d, _) => d.policies.clone(),
    };
    (Decision::is_allowed(&decision), policies)
}

fn principal(inputs: &DecisionInputs) -> Principal {
    Principal {
        kind: if inputs.principal_type == "service_account" {
            PrincipalKind::ServiceAccount
        } else {
            PrincipalKind::User
        },
        id: inputs.principal.clone(),
        client_id: None,
        roles: inputs.roles.clone(),
        scopes: inputs.scopes.clone(),
        amr: Vec::new(),
        acr: inputs.acr.clone(),
        auth_time: inputs.auth_time,
        mfa: inputs.mfa,
        method: AuthMethod::Jwt,
        issued_at: None,
        email: None,
    }
}

fn facts(inputs: &DecisionInputs) -> RequestFacts {
    RequestFacts {
        source_ip: inputs
            .source_ip
            .parse()
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        now_unix: inputs.now_unix,
        resource: ResourceFacts {
            creator: inputs.creator.clone(),
            amount: inputs.amount,
            currency: inputs.currency.clone(),
            status: inputs.status.clone(),
            company: inputs.company.clone(),
            ..ResourceFacts::default()
        },
        export: ExportFacts {
            rows_requested: inputs.export_rows_requested,
            within_limits: inputs.export_within_limits,
            approved: inputs.export_approved,
        },
        break_glass_reason: inputs.break_glass_reason.clone(),
        user_scopes_enforced: inputs.scopes_enforced,
    }
}

/// The replay as a table for people.
pub fn table(report: &Replay) -> String {
    let mut out = format!(
        "candidate {}: {} decision(s) replayed, {} unchanged, {} changed; {} event(s) not replayable (no recorded inputs)\n",
        report.candidate_version,
        report.replayed,
        report.unchanged,
        report.replayed - report.unchanged,
        report.not_replayable
    );
    for group in &report.changes {
        out.push_str(&format!(
            "\n{} ×{}  {}  by {}  (was {})\n  principal {} [{}]\n",
            group.change,
            group.count,
            group.action,
            group.policies.join(", "),
            if group.recorded_policies.is_empty() {
                "default deny".to_owned()
            } else {
                group.recorded_policies.join(", ")
            },
            group.principal,
            group.roles.join(", ")
        ));
        for example in &group.examples {
            out.push_str(&format!("  e.g. {example}\n"));
        }
    }
    out
}
