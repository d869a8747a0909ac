//! `invoiceguard evidence`: the arguments, the settings read from the configuration, and where
//! the pack is written. The pack itself is `invoiceguard_evidence`.

use std::path::PathBuf;
use std::process::ExitCode;

use invoiceguard_audit::query::Bound;
use invoiceguard_evidence::{Account, Inputs, Setup};
use invoiceguard_gateway::Config;
use invoiceguard_policy::PolicyEngine;

/// What `evidence` takes.
#[derive(clap::Args)]
pub(crate) struct EvidenceArgs {
    /// The configuration file the gateway runs with (its settings, policy folder and spool).
    #[arg(long, short, default_value = "invoiceguard.toml")]
    config: PathBuf,
    /// Trails to read instead of the configuration's spool: spool folders or sink files;
    /// several (one per replica) are merged by time.
    #[arg(long = "trail", value_name = "PATH")]
    trails: Vec<PathBuf>,
    /// The restore test report to include (`restore-report.json`, written by `invoiceguard
    /// audit restore`): the control table's "restore test report".
    #[arg(long, value_name = "FILE")]
    restore_report: Option<PathBuf>,
    /// From this time on (2026-12-01, or RFC 3339).
    #[arg(long)]
    from: Option<Bound>,
    /// Before this time (exclusive).
    #[arg(long)]
    to: Option<Bound>,
    /// The folder the pack is written to: evidence.html, evidence.json, csv/.
    #[arg(long, default_value = "evidence")]
    out: PathBuf,
    /// A candidate policy folder: the pack adds what it would have decided differently over
    /// the period (as `policy replay` does).
    #[arg(long, value_name = "DIR")]
    replay_candidate: Option<PathBuf>,
}

/// Builds and writes the pack.
pub(crate) fn evidence(args: &EvidenceArgs) -> ExitCode {
    if let Some(problem) =
        invoiceguard_audit::query::empty_period(args.from.as_ref(), args.to.as_ref())
    {
        eprintln!("invoiceguard: {problem}");
        return ExitCode::from(2);
    }
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            return ExitCode::from(2);
        }
    };
    let engine = match PolicyEngine::load(&config.policy) {
        Ok(engine) => engine,
        Err(invoiceguard_policy::LoadError(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "invoiceguard: the policy folder `{}` has {} problem(s): no evidence from it",
                config.policy.dir.display(),
                problems.len()
            );
            return ExitCode::from(2);
        }
    };
    // The spool's keys, when it is sealed.
    if let Err(code) = crate::install_config_keys(&config.audit) {
        return code;
    }
    let chain =
        match invoiceguard_audit::Chain::from_key_file(config.audit.hmac_key_file.as_deref()) {
            Ok(chain) => chain,
            Err(error) => {
                eprintln!("invoiceguard: {error}");
                return ExitCode::from(2);
            }
        };
    let trails = if args.trails.is_empty() {
        vec![config.audit.spool.clone()]
    } else {
        args.trails.clone()
    };
    let candidate = match &args.replay_candidate {
        Some(dir) => match PolicyEngine::load(&invoiceguard_policy::PolicyConfig {
            dir: dir.clone(),
            ..invoiceguard_policy::PolicyConfig::default()
        }) {
            Ok(engine) => Some(engine),
            Err(problems) => {
                eprintln!(
                    "invoiceguard: the candidate `{}` does not load:\n{problems}",
                    dir.display()
                );
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let mut setup = setup(&args.config, &config);
    if let Some(file) = &args.restore_report {
        let report = std::fs::read(file)
            .map_err(|error| error.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|error| error.to_string()));
        match report {
            Ok(report) => setup.restore_report = Some((file.display().to_string(), report)),
            Err(error) => {
                eprintln!(
                    "invoiceguard: --restore-report `{}`: {error}",
                    file.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    let inputs = Inputs {
        candidate: candidate.as_ref(),
        setup: &setup,
        engine: &engine,
        trails: &trails,
        chain: &chain,
        from: args.from.clone(),
        to: args.to.clone(),
    };
    let written = invoiceguard_evidence::build(&inputs)
        .and_then(|pack| Ok((invoiceguard_evidence::write(&pack, &args.out)?, pack)));
    match written {
        Ok((paths, pack)) => {
            println!(
                "evidence pack for {} events written to {}: evidence.html, evidence.json and {} CSV file(s)",
                pack.sources.events,
                args.out.display(),
                paths.len().saturating_sub(2)
            );
            for section in pack.sections.iter().filter(|s| s.attention) {
                println!(
                    "attention: {}: {}",
                    section.control,
                    section.findings.join(" ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("invoiceguard: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The settings the sections show, from the configuration.
fn setup(file: &std::path::Path, config: &Config) -> Setup {
    let authn = &config.authn;
    let mut accounts: Vec<Account> = authn
        .api_keys
        .iter()
        .map(|a| Account {
            name: a.account.clone(),
            kind: "api_key",
            scopes: a.scopes.clone(),
            credentials: a
                .sha256
                .iter()
                .map(|hash| hash.get(..12).unwrap_or(hash).to_owned())
                .collect(),
        })
        .collect();
    accounts.extend(authn.mtls_accounts.iter().map(|a| Account {
        name: a.account.clone(),
        kind: "client_certificate",
        scopes: a.scopes.clone(),
        credentials: vec![a.dns_name.clone()],
    }));
    Setup {
        config_file: file.to_owned(),
        policy_dir: config.policy.dir.clone(),
        issuers: authn.issuers().into_iter().map(|i| i.issuer).collect(),
        mfa_amr: authn.mfa_amr.clone(),
        mfa_acr: authn.mfa_acr.clone(),
        require_typ: authn.require_typ.clone(),
        leeway_s: authn.leeway_s,
        failed_auth_per_ip: config.limits.failed_auth_per_ip,
        failed_auth_per_subject: config.limits.failed_auth_per_subject,
        failed_auth_window_s: config.limits.failed_auth_window_s,
        accounts,
        listener_tls: config.listen.tls.is_some(),
        client_ca: config.listen.client_ca_file.is_some(),
        upstream_https: config.upstream.url.starts_with("https://"),
        session: config
            .session
            .as_ref()
            .map(|session| invoiceguard_evidence::SessionSetup {
                external_url: session.origin().to_owned(),
                cookie: invoiceguard_session::set_cookie(
                    invoiceguard_session::SESSION_COOKIE,
                    "<random id>",
                    session.same_site,
                    None,
                ),
                idle_timeout_s: session.idle_timeout_s,
                absolute_timeout_s: session.absolute_timeout_s,
                on_device_change: match session.on_device_change {
                    invoiceguard_session::DeviceChange::Audit => "audited (severity high)",
                    invoiceguard_session::DeviceChange::End => "audited, and the session ends",
                }
                .to_owned(),
                cors_origins: session.cors_origins.clone(),
            }),
        chain_keyed: config.audit.hmac_key_file.is_some(),
        spool_key_id: invoiceguard_audit::at_rest::Keyring::load(
            config.audit.encryption_key_file.as_deref(),
            &[],
        )
        .ok()
        .and_then(|keyring| keyring.current_id().map(str::to_owned)),
        archive: config.audit.archive.as_ref().map(|archive| {
            (
                archive.dir.display().to_string(),
                archive.keep_days,
                archive.max_bytes,
            )
        }),
        restore_report: None,
        sinks: config
            .audit
            .sinks
            .iter()
            .map(|sink| {
                let kind = if sink.syslog.is_some() {
                    "syslog"
                } else if sink.http.is_some() {
                    "http"
                } else {
                    "file"
                };
                (sink.name.clone(), kind.to_owned())
            })
            .collect(),
        sensitive_actions: config.audit.sensitive_actions.clone(),
        audit_fail_open: config.audit.fail_open,
    }
}
