//! `invoiceguard grant`: a role for a person until a set time, under a ticket — given, listed
//! and lifted through a running gateway's admin listener (`/grants`). Giving and lifting carry
//! the granter's own access token (`--token-file`, or `INVOICEGUARD_TOKEN`): the gateway decides
//! by its policies whether this person may grant this role to that one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// What `grant` does.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["subject", "list", "lift"])))]
pub(crate) struct GrantArgs {
    /// The configuration file (its `[admin]` address and token file are used).
    #[arg(long, short, default_value = "invoiceguard.toml")]
    config: PathBuf,
    /// The person to grant the role to (their `sub`).
    #[arg(long, requires_all = ["role", "until", "ticket", "reason"])]
    subject: Option<String>,
    /// The role granted.
    #[arg(long)]
    role: Option<String>,
    /// Until when: an RFC 3339 time (`2026-12-24T18:00:00Z`) or a time from now (`+8h`, `+3d`,
    /// `+90m`); at most 90 days.
    #[arg(long)]
    until: Option<String>,
    /// The ticket (or approved request) the grant is given under, e.g. `FIN-123`.
    #[arg(long)]
    ticket: Option<String>,
    /// Why (recorded with the grant).
    #[arg(long)]
    reason: Option<String>,
    /// List the grants.
    #[arg(long)]
    list: bool,
    /// Lift this grant (its id) now.
    #[arg(long, value_name = "ID")]
    lift: Option<String>,
    /// A file holding the granter's own access token (default: `INVOICEGUARD_TOKEN`).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

pub(crate) fn grant(args: &GrantArgs) -> ExitCode {
    match call(args) {
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

/// The granter's access token.
fn granter_token(args: &GrantArgs) -> anyhow::Result<String> {
    let token = match &args.token_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?,
        None => std::env::var("INVOICEGUARD_TOKEN").context(
            "the granter's access token is needed: `--token-file FILE` or INVOICEGUARD_TOKEN",
        )?,
    };
    let token = token.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "the granter's access token is empty");
    Ok(format!("Bearer {token}"))
}

/// Reads `--until`: an RFC 3339 time, or `+N` with `s`, `m`, `h` or `d` from now.
pub(crate) fn parse_until(text: &str, now_unix: u64) -> anyhow::Result<u64> {
    if let Some(span) = text.strip_prefix('+') {
        let (number, unit) = span.split_at(span.len().saturating_sub(1));
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => anyhow::bail!("`--until {text}`: a time from now ends in s, m, h or d (`+8h`)"),
        };
        let count: u64 = number
            .parse()
            .with_context(|| format!("`--until {text}`: `{number}` is not a whole number"))?;
        return Ok(now_unix + count * seconds);
    }
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("`--until {text}`: neither an RFC 3339 time nor `+N` with s, m, h or d")
        })?;
    u64::try_from(time.unix_timestamp()).context("`--until` is before 1970")
}

fn call(args: &GrantArgs) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let header = "x-invoiceguard-granter";
    let (method, path, body, granter) = if let Some(subject) = &args.subject {
        let until = parse_until(args.until.as_deref().unwrap_or_default(), now)?;
        let body = serde_json::json!({
            "subject": subject,
            "role": args.role,
            "until_unix": until,
            "ticket": args.ticket,
            "reason": args.reason,
        });
        let granter = Some((header, granter_token(args)?));
        (
            http::Method::POST,
            "/grants".to_owned(),
            body.to_string(),
            granter,
        )
    } else if let Some(id) = &args.lift {
        let path = format!("/grants/{}", crate::admin::encode_segment(id));
        let granter = Some((header, granter_token(args)?));
        (http::Method::DELETE, path, String::new(), granter)
    } else {
        (http::Method::GET, "/grants".to_owned(), String::new(), None)
    };
    let (status, text) = crate::admin::call(&args.config, method, &path, body, granter)?;
    anyhow::ensure!(
        status.is_success(),
        "the admin listener answered {status}: {text}"
    );
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_a_time_or_a_span_from_now() {
        assert_eq!(parse_until("+8h", 1000).unwrap(), 1000 + 8 * 3600);
        assert_eq!(parse_until("+3d", 0).unwrap(), 3 * 86_400);
        assert_eq!(parse_until("+90m", 0).unwrap(), 5400);
        assert_eq!(
            parse_until("2026-12-24T18:00:00Z", 0).unwrap(),
            1_798_135_200
        );
        assert!(parse_until("+8w", 0).is_err());
        assert!(parse_until("tomorrow", 0).is_err());
        assert!(parse_until("+h", 0).is_err());
    }
}
