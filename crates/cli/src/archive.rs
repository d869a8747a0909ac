//! `invoiceguard audit archive verify`, `audit restore` and `audit ship`: the trail at rest —
//! sealed archives checked (signatures, hashes, the chain across them, gaps), a verified range
//! restored as spool segments with its restore test report, and a restored folder delivered
//! again to a sink (a SIEM that lost data), with the events' own ids.

use std::path::PathBuf;
use std::process::ExitCode;

use invoiceguard_audit::Chain;
use invoiceguard_gateway::Config;

/// What the archive commands read with.
#[derive(clap::Args)]
pub(crate) struct Keys {
    /// A trusted signing key (base64 Ed25519 public key, as `policy keygen` prints); repeatable.
    /// Without one, each manifest is checked with the key it names.
    #[arg(long = "trusted-key", value_name = "BASE64")]
    trusted: Vec<String>,
    /// The HMAC secret the chain is keyed with (`[audit] hmac_key_file`).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// A key that sealed segments (`[audit] encryption_key_file`, or an older one); repeatable.
    #[arg(long = "encryption-key", value_name = "FILE")]
    encryption_keys: Vec<PathBuf>,
}

impl Keys {
    /// The chain, with the sealing keys installed; exit code 2 when a key cannot be read.
    fn chain(&self) -> Result<Chain, ExitCode> {
        crate::install_keys(&self.encryption_keys)?;
        Chain::from_key_file(self.key_file.as_deref()).map_err(|error| {
            eprintln!("invoiceguard: {error}");
            ExitCode::from(2)
        })
    }
}

/// `audit archive verify DIR`.
pub(crate) fn verify(dir: &std::path::Path, keys: &Keys) -> ExitCode {
    let chain = match keys.chain() {
        Ok(chain) => chain,
        Err(code) => return code,
    };
    let check = match invoiceguard_audit::archive::verify_archives(dir, &keys.trusted, &chain) {
        Ok(check) => check,
        Err(error) => {
            eprintln!("invoiceguard: cannot read `{}`: {error}", dir.display());
            return ExitCode::from(2);
        }
    };
    for note in &check.notes {
        println!("note: {note}");
    }
    for problem in &check.problems {
        println!("{problem}");
    }
    match (check.is_intact(), check.seq_range) {
        (true, Some((first, last))) => {
            println!(
                "ok: {} archives, {} events, seq {first} to {last}, signatures, hashes and chain intact",
                check.archives, check.events
            );
            ExitCode::SUCCESS
        }
        _ => {
            println!(
                "{} problem(s) in {} archives",
                check.problems.len().max(1),
                check.archives
            );
            ExitCode::FAILURE
        }
    }
}

/// What `audit restore` does.
#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    /// The archive folder (`[audit.archive] dir`).
    #[arg(long)]
    from: PathBuf,
    /// The folder to restore into (a spool folder: `audit verify`, `audit query` and
    /// `audit ship` read it).
    #[arg(long)]
    to: PathBuf,
    /// Only archives with events from this time on (RFC 3339).
    #[arg(long)]
    from_time: Option<String>,
    /// Only archives with events before this time (RFC 3339).
    #[arg(long)]
    to_time: Option<String>,
    #[command(flatten)]
    keys: Keys,
}

/// `audit restore`: prints the report's summary; the report is in `TO/restore-report.json`.
pub(crate) fn restore(args: &RestoreArgs) -> ExitCode {
    let chain = match args.keys.chain() {
        Ok(chain) => chain,
        Err(code) => return code,
    };
    for (name, time) in [
        ("--from-time", &args.from_time),
        ("--to-time", &args.to_time),
    ] {
        if let Some(time) = time
            && time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .is_err()
        {
            eprintln!("invoiceguard: {name} `{time}` is not an RFC 3339 time");
            return ExitCode::from(2);
        }
    }
    let report = match invoiceguard_audit::archive::restore(
        &args.from,
        &args.to,
        args.from_time.as_deref(),
        args.to_time.as_deref(),
        &args.keys.trusted,
        &chain,
    ) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            return ExitCode::from(2);
        }
    };
    for problem in &report.problems {
        println!("{problem}");
    }
    let path = args.to.join(invoiceguard_audit::archive::RESTORE_REPORT);
    if report.archives_verified && report.restored_verified {
        let (first, last) = report.seq_range.unwrap_or_default();
        println!(
            "ok: {} archives restored into `{}`: {} events, seq {first} to {last}, verified; report `{}`",
            report.archives.len(),
            args.to.display(),
            report.events,
            path.display()
        );
        ExitCode::SUCCESS
    } else {
        println!("restore failed; report `{}`", path.display());
        ExitCode::FAILURE
    }
}

/// What `audit ship` does.
#[derive(clap::Args)]
pub(crate) struct ShipArgs {
    /// The configuration file (its sink named by `--sink`, and its spool's keys).
    #[arg(long, short, default_value = "invoiceguard.toml")]
    config: PathBuf,
    /// A spool folder (a restored one).
    #[arg(long)]
    from: PathBuf,
    /// The `[[audit.sinks]]` entry to deliver to.
    #[arg(long)]
    sink: String,
    /// A key that sealed segments (beyond the configuration's); repeatable.
    #[arg(long = "encryption-key", value_name = "FILE")]
    encryption_keys: Vec<PathBuf>,
}

/// `audit ship`: every event of the folder delivered to the sink once more.
pub(crate) fn ship(args: &ShipArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(code) = crate::install_config_keys(&config.audit) {
        return code;
    }
    if let Err(code) = crate::install_keys(&args.encryption_keys) {
        return code;
    }
    let Some(sink) = config.audit.sinks.iter().find(|s| s.name == args.sink) else {
        let names: Vec<&str> = config.audit.sinks.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "invoiceguard: `{}` has no sink `{}` (its sinks: {})",
            args.config.display(),
            args.sink,
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(invoiceguard_audit::ship_folder(sink, &args.from)) {
        Ok(shipped) => {
            println!(
                "ok: {shipped} events of `{}` delivered to sink `{}`",
                args.from.display(),
                args.sink
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            ExitCode::FAILURE
        }
    }
}
