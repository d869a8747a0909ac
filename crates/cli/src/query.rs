//! `invoiceguard audit query`: the arguments, the named questions, and the output as a table,
//! JSON lines or CSV. The scan itself is `invoiceguard_audit::query`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use invoiceguard_audit::query::{self, Bound, Filter, Logins, View};

/// How the answer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns, for reading.
    Table,
    /// Each matching event as it is in the trail, one per line.
    Jsonl,
    /// The table's columns as CSV (RFC 4180).
    Csv,
}

/// What `audit query` takes.
#[derive(clap::Args)]
pub(crate) struct QueryArgs {
    /// Trails: spool folders (their segments, oldest first) or files a file sink wrote; several
    /// (one per replica) are merged by time.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// A key that sealed segments (`[audit] encryption_key_file`, or an older one); repeatable.
    #[arg(long = "encryption-key", value_name = "FILE")]
    encryption_keys: Vec<PathBuf>,
    /// The actor's id (a user's subject, an integration account).
    #[arg(long)]
    actor: Option<String>,
    /// The actor's type: user, service_account or admin.
    #[arg(long = "type")]
    principal_type: Option<String>,
    /// A Cedar action, or a prefix ending in `*` (`export:*`).
    #[arg(long)]
    action: Option<String>,
    /// The event's category (authentication, authorization, export, administration,
    /// integration, revocation, break-glass).
    #[arg(long)]
    category: Option<String>,
    /// The resource's type (Invoice, Partner, Export…).
    #[arg(long)]
    resource_type: Option<String>,
    /// The resource's id.
    #[arg(long)]
    resource_id: Option<String>,
    /// allow or deny.
    #[arg(long)]
    decision: Option<String>,
    /// A status (403) or a class (4xx).
    #[arg(long)]
    status: Option<String>,
    /// The client's address.
    #[arg(long)]
    source_ip: Option<String>,
    /// The least severity: info, warning, high, error, critical.
    #[arg(long)]
    severity: Option<String>,
    /// From this time on (2026-12-01, or RFC 3339).
    #[arg(long)]
    from: Option<Bound>,
    /// Before this time (exclusive).
    #[arg(long)]
    to: Option<Bound>,
    /// Also the `authorized` events written before a change was forwarded.
    #[arg(long)]
    all_stages: bool,
    /// Who logged in, when and how: each caller by method, MFA and address; refused
    /// credentials by address.
    #[arg(long, conflicts_with_all = ["invoice", "exports", "admin_changes", "integration"])]
    who_logged_in: bool,
    /// One invoice's history: every request about it.
    #[arg(long, value_name = "ID")]
    invoice: Option<String>,
    /// Exports: who exported, how many rows.
    #[arg(long)]
    exports: bool,
    /// With --exports: only bulk ones (over 500 rows).
    #[arg(long, requires = "exports")]
    bulk: bool,
    /// Changes to settings, users and roles, and revocations.
    #[arg(long)]
    admin_changes: bool,
    /// What an integration account did: its calls, then a summary by action.
    #[arg(long, value_name = "ACCOUNT")]
    integration: Option<String>,
    /// table, jsonl or csv.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

impl QueryArgs {
    /// The filter the flags and the named question make.
    fn filter(&self) -> Filter {
        let mut filter = Filter {
            actor: self.actor.clone(),
            principal_type: self.principal_type.clone(),
            action: self.action.clone(),
            category: self.category.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            decision: self.decision.clone(),
            status: self.status.clone(),
            source_ip: self.source_ip.clone(),
            min_severity: self.severity.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            bulk: self.bulk,
            all_stages: self.all_stages,
        };
        if let Some(invoice) = &self.invoice {
            filter.resource_type = Some("Invoice".to_owned());
            filter.resource_id = Some(invoice.clone());
        }
        if self.exports {
            filter.action = Some("export:*".to_owned());
        }
        if let Some(account) = &self.integration {
            filter.actor = Some(account.clone());
            filter.principal_type = Some("service_account".to_owned());
        }
        filter
    }
}

/// A change to settings, users or roles, or to revocations (reads are not changes).
fn is_admin_change(event: &View<'_>) -> bool {
    matches!(event.category.as_ref(), "administration" | "revocation")
        && !matches!(event.request.method.as_ref(), "GET" | "HEAD" | "OPTIONS")
}

/// The table's columns.
const COLUMNS: [&str; 9] = [
    "time", "actor", "action", "resource", "decision", "status", "rows", "source", "detail",
];

/// An event as the table's cells.
fn cells(event: &View<'_>) -> [String; 9] {
    let actor = event.actor.as_ref().map_or_else(
        || "-".to_owned(),
        |a| {
            format!(
                "{} ({}{})",
                a.id,
                a.auth_method,
                if a.mfa { ", mfa" } else { "" }
            )
        },
    );
    let resource = event.resource.as_ref().map_or_else(
        || event.request.path.to_string(),
        |r| format!("{} {}", r.kind, r.id),
    );
    let detail = event
        .break_glass_reason
        .as_deref()
        .map(|reason| format!("break-glass: {reason}"))
        .or_else(|| event.decision.detail.as_deref().map(str::to_owned))
        .or_else(|| {
            let policies = &event.decision.policies;
            (!policies.is_empty()).then(|| policies.join(" "))
        })
        .unwrap_or_else(|| event.decision.reason.to_string());
    [
        event.time.to_string(),
        actor,
        event.action.as_deref().unwrap_or("-").to_owned(),
        resource,
        event.decision.effect.to_string(),
        event.outcome.status.to_string(),
        event
            .outcome
            .export_rows
            .map_or_else(String::new, |r| r.to_string()),
        event.source.ip.to_string(),
        detail,
    ]
}

/// One CSV field (RFC 4180: quoted when it holds a comma, a quote or a line break).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Rows written as the format says; the table is aligned once every row is known.
struct Output {
    format: Format,
    rows: Vec<Vec<String>>,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Output {
    fn new(format: Format, header: &[&str]) -> Self {
        let mut output = Self {
            format,
            rows: Vec::new(),
            out: std::io::BufWriter::new(std::io::stdout()),
        };
        output.row(header.iter().map(|h| (*h).to_owned()).collect());
        output
    }

    fn row(&mut self, row: Vec<String>) {
        match self.format {
            Format::Table => self.rows.push(row),
            Format::Csv => {
                let line: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
                let _ = writeln!(self.out, "{}", line.join(","));
            }
            Format::Jsonl => {}
        }
    }

    fn line(&mut self, line: &[u8]) {
        let _ = self.out.write_all(line);
        let _ = self.out.write_all(b"\n");
    }

    fn finish(mut self) {
        if self.format == Format::Table {
            let mut widths = vec![0; self.rows.first().map_or(0, Vec::len)];
            for row in &self.rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count().min(60));
                }
            }
            for row in &self.rows {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| {
                        let cut: String = cell.chars().take(60).collect();
                        format!("{cut:width$}")
                    })
                    .collect();
                let _ = writeln!(self.out, "{}", cells.join("  ").trim_end());
            }
        }
        let _ = self.out.flush();
    }
}

/// Runs the query and writes its answer.
pub(crate) fn audit_query(args: &QueryArgs) -> ExitCode {
    if let Err(code) = crate::install_keys(&args.encryption_keys) {
        return code;
    }
    if let Some(problem) = query::empty_period(args.from.as_ref(), args.to.as_ref()) {
        eprintln!("invoiceguard: {problem}");
        return ExitCode::from(2);
    }
    let filter = args.filter();
    let scanned = if args.who_logged_in {
        who_logged_in(args, &filter)
    } else {
        events(args, &filter)
    };
    match scanned {
        Ok((read, skipped)) => {
            if skipped > 0 {
                eprintln!("note: {skipped} of {read} lines were not audit events and were skipped");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("invoiceguard: cannot read the trail: {error}");
            ExitCode::from(2)
        }
    }
}

/// Every matching event, then (for --integration) a summary by action.
fn events(args: &QueryArgs, filter: &Filter) -> std::io::Result<(u64, u64)> {
    let mut output = Output::new(args.format, &COLUMNS);
    let mut by_action: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    let scanned = query::scan(&args.paths, filter, |line, event| {
        if args.admin_changes && !is_admin_change(event) {
            return;
        }
        if args.integration.is_some() {
            let counts = by_action
                .entry(event.action.as_deref().unwrap_or("-").to_owned())
                .or_default();
            counts[0] += 1;
            counts[1] += u64::from(event.decision.effect == "deny");
            counts[2] += u64::from(event.outcome.status >= 500);
        }
        match args.format {
            Format::Jsonl => output.line(line),
            _ => output.row(cells(event).to_vec()),
        }
    })?;
    output.finish();
    if args.integration.is_some() && args.format == Format::Table {
        let mut summary = Output::new(Format::Table, &["action", "calls", "denied", "errors"]);
        for (action, [calls, denied, errors]) in by_action {
            summary.row(vec![
                action,
                calls.to_string(),
                denied.to_string(),
                errors.to_string(),
            ]);
        }
        println!();
        summary.finish();
    }
    Ok(scanned)
}

/// Who logged in, when and how.
fn who_logged_in(args: &QueryArgs, filter: &Filter) -> std::io::Result<(u64, u64)> {
    let mut logins = Logins::default();
    let scanned = query::scan(&args.paths, filter, |_, event| logins.add(event))?;
    let header = [
        "actor", "type", "method", "mfa", "source", "first", "last", "requests", "denied",
    ];
    let mut output = Output::new(args.format, &header);
    for login in logins.callers() {
        output.row(vec![
            login.actor.clone(),
            login.kind.clone(),
            login.method.clone(),
            login.mfa.to_string(),
            login.source_ip.clone(),
            login.first.clone(),
            login.last.clone(),
            login.requests.to_string(),
            login.denied.to_string(),
        ]);
    }
    for failed in logins.failed() {
        output.row(vec![
            "(refused credentials)".to_owned(),
            "-".to_owned(),
            failed.reasons.join(" "),
            "-".to_owned(),
            failed.source_ip.clone(),
            failed.first.clone(),
            failed.last.clone(),
            failed.count.to_string(),
            failed.count.to_string(),
        ]);
    }
    if args.format == Format::Jsonl {
        let mut out = std::io::stdout().lock();
        for login in logins.callers() {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"actor": login.actor, "type": login.kind, "method": login.method,
                    "mfa": login.mfa, "source": login.source_ip, "first": login.first,
                    "last": login.last, "requests": login.requests, "denied": login.denied})
            );
        }
        for failed in logins.failed() {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"refused_credentials": true, "source": failed.source_ip,
                    "reasons": failed.reasons, "first": failed.first, "last": failed.last,
                    "count": failed.count})
            );
        }
    }
    output.finish();
    Ok(scanned)
}
