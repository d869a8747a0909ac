//! `invoiceguard evidence`: the evidence pack an auditor asks for, for a period — one section
//! per control of the access baseline's table (MFA, SSO, RBAC, authentication and lockout,
//! sessions, admin accounts, joiners/movers/leavers, logging, exports, integration accounts,
//! encryption, backup), each with what it shows and where that came from.
//!
//! Everything is derived, never copied: the role matrix by asking the Cedar policies about every
//! role and route, the prohibited combinations by running the decision cases, the numbers by one
//! pass over the trails (`invoiceguard_audit::query::scan`), the trail's integrity by verifying
//! its chain, the settings from the configuration the gateway runs with. Written as a
//! self-contained HTML report (inline CSS and SVG charts, no scripts; prints to PDF), a JSON file
//! of the whole pack and one CSV file per table ([`write`]).

mod html;
mod matrix;
mod pack;
pub mod replay;
mod sections;
mod tally;
mod trail;

use std::path::{Path, PathBuf};

use invoiceguard_audit::Chain;
use invoiceguard_audit::query::{self, Bound, Filter};
use invoiceguard_policy::PolicyEngine;

pub use pack::{Chart, Pack, Period, Section, Series, Sources, Table};

/// What the configuration says, for the sections that show settings.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The configuration file.
    pub config_file: PathBuf,
    /// The policy folder (its `tests/` hold the decision cases).
    pub policy_dir: PathBuf,
    /// The token issuers trusted.
    pub issuers: Vec<String>,
    /// `amr` values that count as multi-factor.
    pub mfa_amr: Vec<String>,
    /// `acr` values that count as multi-factor.
    pub mfa_acr: Vec<String>,
    /// The token `typ` required, if any.
    pub require_typ: Option<String>,
    /// Clock leeway for token times, seconds.
    pub leeway_s: u64,
    /// Failed authentications per address before lockout.
    pub failed_auth_per_ip: u64,
    /// Failed authentications per subject before lockout.
    pub failed_auth_per_subject: u64,
    /// The lockout window, seconds.
    pub failed_auth_window_s: u64,
    /// The integration accounts the configuration holds.
    pub accounts: Vec<Account>,
    /// The listener serves TLS.
    pub listener_tls: bool,
    /// Client certificates are asked for (a client CA is set).
    pub client_ca: bool,
    /// The upstream is reached over HTTPS.
    pub upstream_https: bool,
    /// The audit chain is keyed (HMAC).
    pub chain_keyed: bool,
    /// The audit sinks' names and kinds (`siem: syslog`).
    pub sinks: Vec<(String, String)>,
    /// The actions recorded before they are forwarded.
    pub sensitive_actions: Vec<String>,
    /// Whether requests are served when the audit spool cannot take their events.
    pub audit_fail_open: bool,
    /// Browser sessions, when `[session]` is configured.
    pub session: Option<SessionSetup>,
    /// The id of the key new spool segments are sealed with, when they are.
    pub spool_key_id: Option<String>,
    /// The archive folder, its retention in days and its cap in bytes, when archives are kept.
    pub archive: Option<(String, u64, u64)>,
    /// The report of the last restore test (`invoiceguard audit restore`), when one is given.
    pub restore_report: Option<(String, invoiceguard_audit::archive::RestoreReport)>,
}

/// The browser-session settings of the configuration.
#[derive(Debug, Clone, Default)]
pub struct SessionSetup {
    /// The origin browsers use.
    pub external_url: String,
    /// The cookie as it is set (name and attributes, no value).
    pub cookie: String,
    /// Seconds without a request before a session ends.
    pub idle_timeout_s: u64,
    /// Seconds after the login before a session ends.
    pub absolute_timeout_s: u64,
    /// What a session used from another device causes (`audit` or `end`).
    pub on_device_change: String,
    /// Other origins allowed credentialed requests.
    pub cors_origins: Vec<String>,
}

/// An integration account of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// Its name (the Cedar `ServiceAccount` id).
    pub name: String,
    /// `api_key` or `client_certificate`.
    pub kind: &'static str,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// API keys: the fingerprints (first 12 hex digits of each accepted key's SHA-256);
    /// certificates: the DNS name the certificate must hold.
    pub credentials: Vec<String>,
}

/// What a pack is built from.
pub struct Inputs<'a> {
    /// The settings.
    pub setup: &'a Setup,
    /// The policy set in the folder.
    pub engine: &'a PolicyEngine,
    /// The trails: spool folders or sink files; several replicas' are merged by time.
    pub trails: &'a [PathBuf],
    /// The chain the trails are hashed with (keyed with `[audit] hmac_key_file`).
    pub chain: &'a Chain,
    /// Events at or after this time.
    pub from: Option<Bound>,
    /// Events before this time.
    pub to: Option<Bound>,
    /// A candidate policy set: the pack then says what it would have decided differently over
    /// the period (a replay of the trail's decisions).
    pub candidate: Option<&'a PolicyEngine>,
}

/// Builds the pack: one pass over the trails, the policies asked, the trails verified.
pub fn build(inputs: &Inputs<'_>) -> std::io::Result<Pack> {
    let filter = Filter {
        from: inputs.from.clone(),
        to: inputs.to.clone(),
        ..Filter::default()
    };
    let mut tally = tally::Tally::default();
    let (lines_read, skipped) = query::scan(inputs.trails, &filter, |_, event| tally.add(event))?;
    let trails = trail::check(inputs.trails, inputs.chain, &inputs.setup.sinks)?;
    let sources = Sources {
        trails: inputs
            .trails
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        lines_read,
        events: tally.events,
        skipped,
        config: inputs.setup.config_file.display().to_string(),
        policy_dir: inputs.setup.policy_dir.display().to_string(),
        policy_version: inputs.engine.version().to_owned(),
    };
    let period = Period {
        from: inputs.from.as_ref().map(ToString::to_string),
        to: inputs.to.as_ref().map(ToString::to_string),
        first_event: tally.first.clone(),
        last_event: tally.last.clone(),
    };
    let mut sections = sections::all(inputs.setup, inputs.engine, &tally, &trails);
    if let Some(candidate) = inputs.candidate {
        let report = replay::replay(
            candidate,
            inputs.trails,
            inputs.from.clone(),
            inputs.to.clone(),
        )?;
        sections.push(sections::replay(&report));
    }
    Ok(Pack {
        generated_at: invoiceguard_audit::now_rfc3339(),
        period,
        sources,
        sections,
    })
}

/// Writes `evidence.html`, `evidence.json` and `csv/<table>.csv` into `dir` (created if
/// missing). Returns the paths written.
pub fn write(pack: &Pack, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let csv_dir = dir.join("csv");
    std::fs::create_dir_all(&csv_dir)?;
    let mut written = Vec::new();
    let html = dir.join("evidence.html");
    std::fs::write(&html, html::render(pack))?;
    written.push(html);
    let json = dir.join("evidence.json");
    let text = serde_json::to_string_pretty(pack).map_err(std::io::Error::other)?;
    std::fs::write(&json, text)?;
    written.push(json);
    for table in pack.sections.iter().flat_map(|s| &s.tables) {
        let path = csv_dir.join(format!("{}.csv", table.id));
        std::fs::write(&path, table.to_csv())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
