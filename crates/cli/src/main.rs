//! `invoiceguard`: the access gateway for e-invoicing APIs.
//!
//! - `invoiceguard serve --config FILE` runs the gateway.
//! - `invoiceguard check --config FILE` validates the configuration, the routes and the policies
//!   and prints every problem with its file and position.
//! - `invoiceguard policy validate DIR` / `policy test DIR` load a policy folder and run its
//!   decision cases (`DIR/tests/*.toml`); `policy explain METHOD PATH --user … --roles …` shows
//!   the decision for a hypothetical request and the policies that make it; `policy keygen`,
//!   `policy sign DIR --key KEY` sign a folder for `[policy] signed_by`; `policy diff OLD NEW`
//!   says what changed; `policy replay --candidate DIR TRAIL...` decides the trail's requests
//!   again with a candidate set.
//! - `invoiceguard revoke --subject ID [--for SECONDS] [--reason TEXT]`, `--list`, `--lift ID`
//!   block or unblock a subject on every replica, through the admin listener.
//! - `invoiceguard grant --subject ID --role ROLE --until TIME --ticket T --reason TEXT`, `--list`,
//!   `--lift ID` give, list and lift time-limited role grants, through the admin listener.
//! - `invoiceguard audit verify FILE|SPOOL...` proves audit files complete and unmodified.
//! - `invoiceguard audit query PATH...` finds events, or answers an auditor's named questions.
//! - `invoiceguard audit keygen`, `audit archive verify DIR`, `audit restore --from --to`,
//!   `audit ship --from DIR --sink NAME`: the trail at rest — sealed, archived, restored, shipped.
//! - `invoiceguard evidence --from … --to … --out DIR` writes the evidence pack for a period.
//! - `invoiceguard export trace FILE TRAIL...` names the export (and the person) a file came from.
//! - `invoiceguard apikey hash` reads an API key on standard input and prints the SHA-256 hash
//!   that `[[authn.api_keys]]` holds in its place.

mod admin;
mod archive;
mod evidence;
mod export;
mod grant;
mod query;
mod replay;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use invoiceguard_gateway::{Config, ConfigError};
use invoiceguard_policy::{LoadError, PolicyEngine};

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers,
/// which glibc's allocator serves at about twice the cost (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The access gateway in front of an e-invoicing API: OIDC authentication, Cedar policies,
/// and an audit event for every request.
#[derive(Parser)]
#[command(name = "invoiceguard", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "invoiceguard.toml")]
        config: PathBuf,
    },
    /// Validate the configuration, routes and policies; exit non-zero on any problem.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "invoiceguard.toml")]
        config: PathBuf,
    },
    /// The security team's tools for a policy folder.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit trail's tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Block a user, an integration account or an API key's account on every replica (or list
    /// or lift revocations), through a running gateway's admin listener.
    Revoke(RevokeArgs),
    /// Grant a role to a person until a set time, under a ticket (or list or lift grants),
    /// through a running gateway's admin listener; the granter's own access token decides
    /// whether they may (policies/grants.cedar).
    Grant(grant::GrantArgs),
    /// The evidence pack for auditors: one section per control of the access baseline (role
    /// matrix, decision cases, MFA coverage, admins and break-glass, lockouts, revocations,
    /// exports, integration accounts, the trail verified), as HTML, JSON and CSV.
    Evidence(Box<evidence::EvidenceArgs>),
    /// Exports: `export trace FILE TRAIL...` finds which export (and so which person) a file
    /// came from, by its watermark or its hash.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// API keys of integration accounts.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Which export a file came from: by its watermark, or by the SHA-256 of its bytes (as
    /// delivered, or without the watermark); exit 1 when no export of the trails matches.
    Trace(export::TraceArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print a new key for sealing the spool (`[audit] encryption_key_file`): base64 of 32
    /// random bytes. Keep it in a file only the gateway's user reads.
    Keygen,
    /// Prove audit files complete and unmodified (the hash chain and the sequence numbers), or
    /// say where they are not; files are read in the order given, a spool folder as its
    /// segments, oldest first.
    Verify {
        /// Audit files (spool segments, or a file sink's files), oldest first, or spool folders.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The HMAC secret the chain is keyed with (`[audit] hmac_key_file`).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// A key that sealed segments (`[audit] encryption_key_file`, or an older one);
        /// repeatable.
        #[arg(long = "encryption-key", value_name = "FILE")]
        encryption_keys: Vec<PathBuf>,
        /// The first file starts mid-chain (older files were archived elsewhere).
        #[arg(long)]
        continues: bool,
        /// The `seq` the trail must end at (noted from `/readyz`, the SIEM, an archive's
        /// manifest): events cut off the end are found. A spool folder's own `head` file is
        /// checked without it.
        #[arg(long)]
        expect_last_seq: Option<u64>,
        /// The hash of the trail's last event (printed by an earlier `verify` as `head`).
        #[arg(long)]
        expect_head: Option<String>,
    },
    /// Find events: by actor, action, category, resource, decision, status, source, severity
    /// and time; or answer a named question (--who-logged-in, --invoice ID, --exports [--bulk],
    /// --admin-changes, --integration ACCOUNT). Several trails are merged by time.
    Query(Box<query::QueryArgs>),
    /// Sealed archives of delivered segments.
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// Restore a verified range of archives into a folder as spool segments, verify it, and
    /// write the restore test report (`restore-report.json`) there.
    Restore(Box<archive::RestoreArgs>),
    /// Deliver every event of a spool folder (a restored one) to a configured sink once more,
    /// with the events' own ids (a SIEM that lost data deduplicates by them).
    Ship(Box<archive::ShipArgs>),
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Check an archive folder: each manifest's Ed25519 signature, each file's SHA-256, the
    /// events against their manifest, the chain from one archive to the next; gaps named.
    Verify {
        /// The archive folder (`[audit.archive] dir`).
        dir: PathBuf,
        #[command(flatten)]
        keys: archive::Keys,
    },
}

/// What `revoke` does.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["subject", "list", "lift"])))]
struct RevokeArgs {
    /// The configuration file (its `[admin]` address and token file are used).
    #[arg(long, short, default_value = "invoiceguard.toml")]
    config: PathBuf,
    /// The subject to block (a user's `sub`, an integration account).
    #[arg(long)]
    subject: Option<String>,
    /// Block for this many seconds only (default: for good).
    #[arg(long = "for", value_name = "SECONDS", requires = "subject")]
    for_s: Option<u64>,
    /// Why (recorded in the audit trail).
    #[arg(long, requires = "subject")]
    reason: Option<String>,
    /// List the revocations.
    #[arg(long)]
    list: bool,
    /// Lift the revocation of this subject.
    #[arg(long, value_name = "SUBJECT")]
    lift: Option<String>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Load a policy folder (schema, policies, routes, entities) and print every problem; a
    /// folder with a `policy.sig` has its signature checked too.
    Validate {
        /// The policy folder.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Require a valid signature by this public key (base64; repeatable), as
        /// `[policy] signed_by` does.
        #[arg(long = "signed-by", value_name = "KEY")]
        signed_by: Vec<String>,
    },
    /// Make an Ed25519 signing key: the private key (PKCS#8 PEM) to FILE, the public key — what
    /// `[policy] signed_by` lists — printed.
    Keygen {
        /// Where the private key is written (never over an existing file).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a policy folder: writes DIR/policy.sig over every file in it.
    Sign {
        /// The policy folder.
        dir: PathBuf,
        /// The private key (PKCS#8 PEM: `policy keygen`, or `openssl genpkey -algorithm ed25519`).
        #[arg(long)]
        key: PathBuf,
    },
    /// What changed from one policy folder to another: files, policies by `@id`, routes.
    Diff {
        /// The folder in force.
        old: PathBuf,
        /// The candidate.
        new: PathBuf,
    },
    /// Run the decision cases in DIR/tests/*.toml; exit non-zero on any mismatch.
    Test {
        /// The policy folder.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// What the policies decide for a hypothetical request, and which policies decide it.
    Explain(Box<ExplainArgs>),
    /// Decide every recorded authorization of the trails again with a candidate policy folder:
    /// the decisions that would change (allow→deny, deny→allow), grouped by policy, action,
    /// roles and principal. Exit 0 when nothing changes, 1 when something does.
    Replay(replay::ReplayArgs),
}

/// A hypothetical request for `policy explain`.
#[derive(clap::Args)]
struct ExplainArgs {
    /// The HTTP method, e.g. POST.
    method: String,
    /// The path, e.g. /invoices/INV-1/approve.
    path: String,
    /// The policy folder.
    #[arg(long, default_value = "policies")]
    dir: PathBuf,
    /// A user's id.
    #[arg(long, conflicts_with = "service_account")]
    user: Option<String>,
    /// An integration account's id.
    #[arg(long)]
    service_account: Option<String>,
    /// The user's roles, comma-separated.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// The account's scopes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// The login was not multi-factor.
    #[arg(long)]
    no_mfa: bool,
    /// Seconds since the login.
    #[arg(long, default_value_t = 60)]
    auth_age: u64,
    /// The invoice's creator.
    #[arg(long)]
    creator: Option<String>,
    /// The invoice's amount.
    #[arg(long)]
    amount: Option<i64>,
    /// Rows an export asks for.
    #[arg(long)]
    export_rows: Option<u64>,
    /// The export quota does not hold them.
    #[arg(long)]
    over_quota: bool,
    /// A stated break-glass reason.
    #[arg(long)]
    break_glass_reason: Option<String>,
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Read one API key on standard input; print the hash to put in `[[authn.api_keys]] sha256`.
    Hash,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Apikey {
            command: ApikeyCommand::Hash,
        } => apikey_hash(),
        Command::Policy {
            command: PolicyCommand::Validate { dir, signed_by },
        } => match policy_validate_signed(&dir, signed_by) {
            Some(_) => ExitCode::SUCCESS,
            None => ExitCode::FAILURE,
        },
        Command::Policy {
            command: PolicyCommand::Keygen { out },
        } => policy_keygen(&out),
        Command::Policy {
            command: PolicyCommand::Sign { dir, key },
        } => match invoiceguard_policy::signature::sign(&dir, &key) {
            Ok(public) => {
                println!("signed `{}` with {public}", dir.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("invoiceguard: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Policy {
            command: PolicyCommand::Diff { old, new },
        } => policy_diff(&old, &new),
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => policy_test(&dir),
        Command::Policy {
            command: PolicyCommand::Replay(args),
        } => replay::replay(&args),
        Command::Policy {
            command: PolicyCommand::Explain(args),
        } => policy_explain(*args),
        Command::Revoke(args) => revoke(&args),
        Command::Grant(args) => grant::grant(&args),
        Command::Evidence(args) => evidence::evidence(&args),
        Command::Export {
            command: ExportCommand::Trace(args),
        } => export::trace(&args),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    files,
                    key_file,
                    encryption_keys,
                    continues,
                    expect_last_seq,
                    expect_head,
                },
        } => install_keys(&encryption_keys).map_or_else(
            |code| code,
            |()| {
                audit_verify(
                    &files,
                    key_file.as_deref(),
                    continues,
                    invoiceguard_audit::Anchor {
                        last_seq: expect_last_seq,
                        head: expect_head,
                        source: "--expect-last-seq/--expect-head".to_owned(),
                    },
                )
            },
        ),
        Command::Audit {
            command: AuditCommand::Keygen,
        } => match invoiceguard_audit::at_rest::generate_key() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("invoiceguard: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Audit {
            command: AuditCommand::Query(args),
        } => query::audit_query(&args),
        Command::Audit {
            command:
                AuditCommand::Archive {
                    command: ArchiveCommand::Verify { dir, keys },
                },
        } => archive::verify(&dir, &keys),
        Command::Audit {
            command: AuditCommand::Restore(args),
        } => archive::restore(&args),
        Command::Audit {
            command: AuditCommand::Ship(args),
        } => archive::ship(&args),
    }
}

/// Adds the spool's configured keys (`[audit] encryption_key_file`, `decryption_key_files`) to
/// those this process opens sealed segments with; exit code 2 and the reason when one is not a key.
pub(crate) fn install_config_keys(audit: &invoiceguard_audit::AuditConfig) -> Result<(), ExitCode> {
    match invoiceguard_audit::at_rest::Keyring::load(
        audit.encryption_key_file.as_deref(),
        &audit.decryption_key_files,
    ) {
        Ok(keyring) => {
            invoiceguard_audit::at_rest::install(&keyring);
            Ok(())
        }
        Err(error) => {
            eprintln!("invoiceguard: audit.encryption_key_file: {error}");
            Err(ExitCode::from(2))
        }
    }
}

/// Adds the keys of `files` to those this process opens sealed segments with; exit code 2 and
/// the reason when a file holds no key.
pub(crate) fn install_keys(files: &[PathBuf]) -> Result<(), ExitCode> {
    match invoiceguard_audit::at_rest::Keyring::load(None, files) {
        Ok(keyring) => {
            invoiceguard_audit::at_rest::install(&keyring);
            Ok(())
        }
        Err(error) => {
            eprintln!("invoiceguard: --encryption-key: {error}");
            Err(ExitCode::from(2))
        }
    }
}

/// Loads the folder, printing its summary or every problem.
fn policy_validate(dir: &Path) -> Option<PolicyEngine> {
    policy_validate_signed(dir, Vec::new())
}

/// Loads the folder, its signature required by one of `signed_by` when any is given, and
/// checked by the key it names when the folder has one; prints the summary or every problem.
fn policy_validate_signed(dir: &Path, signed_by: Vec<String>) -> Option<PolicyEngine> {
    use invoiceguard_policy::signature;
    if signed_by.is_empty() && dir.join(signature::SIGNATURE_FILE).exists() {
        match signature::verify(dir, &[]) {
            Ok(key) => println!("signature: valid, by {key}"),
            Err(problem) => {
                println!(
                    "{}: {problem}",
                    dir.join(signature::SIGNATURE_FILE).display()
                );
                return None;
            }
        }
    }
    match PolicyEngine::load(&invoiceguard_policy::PolicyConfig {
        dir: dir.to_owned(),
        signed_by,
        ..Default::default()
    }) {
        Ok(engine) => {
            if let Some(key) = engine.signer() {
                println!("signature: valid, by {key} (in signed_by)");
            }
            println!(
                "ok: {} policies, {} routes, policy set version {}",
                engine.policy_count(),
                engine.routes().routes().len(),
                engine.version()
            );
            Some(engine)
        }
        Err(LoadError(problems)) => {
            for problem in &problems {
                println!("{problem}");
            }
            println!("{} problem(s)", problems.len());
            None
        }
    }
}

fn policy_keygen(out: &Path) -> ExitCode {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = invoiceguard_policy::signature::generate_key().and_then(|(pem, public)| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .and_then(|mut file| file.write_all(pem.as_bytes()))
            .map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
        Ok(public)
    });
    match written {
        Ok(public) => {
            println!("{public}");
            eprintln!(
                "the private key is in `{}` (keep it off the gateways); list the public key above in [policy] signed_by",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            ExitCode::FAILURE
        }
    }
}

fn policy_diff(old: &Path, new: &Path) -> ExitCode {
    let (Some(before), Some(after)) = (policy_validate(old), policy_validate(new)) else {
        return ExitCode::FAILURE;
    };
    println!("version {} -> {}", before.version(), after.version());
    let changes = after.changes_from(&before);
    for (what, list) in [
        ("file changed", &changes.files),
        ("policy added", &changes.added),
        ("policy removed", &changes.removed),
        ("policy changed", &changes.changed),
        ("route added", &changes.routes_added),
        ("route removed", &changes.routes_removed),
    ] {
        for item in list {
            println!("{what}: {item}");
        }
    }
    if changes == invoiceguard_policy::Changes::default() {
        println!("no change");
    }
    ExitCode::SUCCESS
}

fn policy_test(dir: &Path) -> ExitCode {
    let Some(engine) = policy_validate(dir) else {
        return ExitCode::FAILURE;
    };
    let outcomes = invoiceguard_policy::run_cases(&engine, &dir.join("tests"));
    let mut failed = 0;
    for outcome in &outcomes {
        match &outcome.failure {
            None => println!("ok     {}", outcome.name),
            Some(why) => {
                failed += 1;
                println!("FAILED {}: {why}", outcome.name);
            }
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if failed == 0 && !outcomes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn policy_explain(args: ExplainArgs) -> ExitCode {
    let Some(engine) = policy_validate(&args.dir) else {
        return ExitCode::FAILURE;
    };
    let user = match (&args.user, &args.service_account) {
        (None, None) => {
            eprintln!("invoiceguard: say who asks: --user ID or --service-account ID");
            return ExitCode::from(2);
        }
        (user, _) => user.clone(),
    };
    let hypothetical = invoiceguard_policy::Hypothetical {
        user,
        service_account: args.service_account,
        roles: args.roles,
        scopes: args.scopes,
        mfa: !args.no_mfa,
        auth_age_s: args.auth_age,
        request: format!("{} {}", args.method.to_ascii_uppercase(), args.path),
        creator: args.creator,
        amount: args.amount,
        export_rows: args.export_rows,
        export_within_limits: !args.over_quota,
        break_glass_reason: args.break_glass_reason,
    };
    match invoiceguard_policy::explain(&engine, &hypothetical) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            ExitCode::FAILURE
        }
    }
}

fn audit_verify(
    files: &[PathBuf],
    key_file: Option<&Path>,
    continues: bool,
    expected: invoiceguard_audit::Anchor,
) -> ExitCode {
    let chain = match invoiceguard_audit::Chain::from_key_file(key_file) {
        Ok(chain) => chain,
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            return ExitCode::from(2);
        }
    };
    let expected = (expected.last_seq.is_some() || expected.head.is_some()).then_some(expected);
    let check = match invoiceguard_audit::verify_trails(files, &chain, continues, expected) {
        Ok(check) => check,
        Err(error) => {
            eprintln!("invoiceguard: cannot read {error}");
            return ExitCode::from(2);
        }
    };
    for note in &check.notes {
        println!("note: {note}");
    }
    let result = check.verification;
    for problem in &result.problems {
        println!("{problem}");
    }
    if let Some(hint) = &result.hint {
        println!("hint: {hint}");
    }
    for duplicate in &result.duplicates {
        println!("note: {duplicate}");
    }
    match (result.is_intact(), result.seq_range) {
        (true, Some((first, last))) => {
            println!(
                "ok: {} events, seq {first} to {last}, chain intact{}",
                result.events,
                if check.anchored { ", end anchored" } else { "" }
            );
            if let Some(head) = &result.head {
                println!("head: {head}");
            }
            ExitCode::SUCCESS
        }
        _ => {
            println!(
                "{} problem(s) in {} events",
                result.problems.len(),
                result.events
            );
            ExitCode::FAILURE
        }
    }
}

fn revoke(args: &RevokeArgs) -> ExitCode {
    match revoke_call(args) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("invoiceguard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Calls the admin listener named by the configuration.
fn revoke_call(args: &RevokeArgs) -> anyhow::Result<String> {
    let (method, path, body) = if let Some(subject) = &args.subject {
        let until = match args.for_s {
            Some(seconds) => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs()
                    + seconds
            }
            None => 0,
        };
        let body =
            serde_json::json!({"subject": subject, "until_unix": until, "reason": args.reason});
        (
            http::Method::POST,
            "/revocations".to_owned(),
            body.to_string(),
        )
    } else if let Some(subject) = &args.lift {
        (
            http::Method::DELETE,
            format!("/revocations/{}", admin::encode_segment(subject)),
            String::new(),
        )
    } else {
        (http::Method::GET, "/revocations".to_owned(), String::new())
    };
    let (status, text) = admin::call(&args.config, method, &path, body, None)?;
    if let Some(subject) = &args.lift {
        anyhow::ensure!(
            status != http::StatusCode::NOT_FOUND,
            "`{subject}` is not revoked: nothing lifted"
        );
    }
    anyhow::ensure!(
        status.is_success(),
        "the admin listener answered {status}: {text}"
    );
    Ok(text)
}

fn apikey_hash() -> ExitCode {
    let mut key = String::new();
    if let Err(error) = std::io::stdin().read_line(&mut key) {
        eprintln!("invoiceguard: cannot read the key from standard input: {error}");
        return ExitCode::FAILURE;
    }
    let key = key.trim_end_matches(['\r', '\n']);
    if key.len() < 16 {
        eprintln!("invoiceguard: an API key must be at least 16 characters long");
        return ExitCode::FAILURE;
    }
    println!("{}", invoiceguard_authn::api_key_hash(key));
    ExitCode::SUCCESS
}

fn serve(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match invoiceguard_gateway::runtime::build(config.listen.worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("invoiceguard: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let telemetry = invoiceguard_telemetry::init(&config.telemetry);
        let served = invoiceguard_gateway::serve(config, shutdown_signal()).await;
        telemetry.shutdown();
        served
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the gateway");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(ConfigError::Invalid { path, problems }) => {
            for problem in &problems {
                println!("{}: {problem}", path.display());
            }
            println!("{} problem(s)", problems.len());
            return ExitCode::FAILURE;
        }
        Err(ConfigError::Parse { path, problems }) => {
            for problem in &problems {
                println!("{}:{problem}", path.display());
            }
            println!("{} problem(s)", problems.len());
            return ExitCode::FAILURE;
        }
        Err(error) => {
            println!("{error}");
            println!("1 problem(s)");
            return ExitCode::FAILURE;
        }
    };
    match policy_validate(&config.policy.dir) {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}
