//! `invoiceguard policy replay`: the arguments and the output; the replay itself is
//! `invoiceguard_evidence::replay`.

use std::path::PathBuf;
use std::process::ExitCode;

use invoiceguard_audit::query::Bound;
use invoiceguard_policy::{PolicyConfig, PolicyEngine};

/// What `policy replay` takes.
#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// The candidate policy folder.
    #[arg(long)]
    candidate: PathBuf,
    /// From this time on (2026-12-01, or RFC 3339).
    #[arg(long)]
    from: Option<Bound>,
    /// Before this time.
    #[arg(long)]
    to: Option<Bound>,
    /// `table` (default) or `json`.
    #[arg(long, default_value = "table")]
    format: String,
    /// Trails: spool folders or files a file sink wrote (several replicas' at once).
    #[arg(required = true)]
    trails: Vec<PathBuf>,
    /// A key that sealed segments (`[audit] encryption_key_file`, or an older one); repeatable.
    #[arg(long = "encryption-key", value_name = "FILE")]
    encryption_keys: Vec<PathBuf>,
}

pub(crate) fn replay(args: &ReplayArgs) -> ExitCode {
    if let Err(code) = crate::install_keys(&args.encryption_keys) {
        return code;
    }
    if let Some(why) = invoiceguard_audit::query::empty_period(args.from.as_ref(), args.to.as_ref())
    {
        eprintln!("invoiceguard: {why}");
        return ExitCode::from(2);
    }
    let candidate = match PolicyEngine::load(&PolicyConfig {
        dir: args.candidate.clone(),
        ..PolicyConfig::default()
    }) {
        Ok(engine) => engine,
        Err(problems) => {
            eprintln!(
                "invoiceguard: the candidate `{}` does not load:\n{problems}",
                args.candidate.display()
            );
            return ExitCode::from(2);
        }
    };
    let report = match invoiceguard_evidence::replay::replay(
        &candidate,
        &args.trails,
        args.from.clone(),
        args.to.clone(),
    ) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("invoiceguard: cannot read the trails: {error}");
            return ExitCode::from(2);
        }
    };
    match args.format.as_str() {
        "json" => match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("invoiceguard: {error}");
                return ExitCode::from(2);
            }
        },
        "table" => print!("{}", invoiceguard_evidence::replay::table(&report)),
        other => {
            eprintln!("invoiceguard: --format {other}: table or json");
            return ExitCode::from(2);
        }
    }
    if report.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
