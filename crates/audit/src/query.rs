//! `invoiceguard audit query`: the events of one or more trails — spool folders, or files a file
//! sink wrote; several replicas' at once, merged by time — that match a filter, or that answer
//! one of the questions an auditor asks first (who logged in and how, an invoice's history, who
//! exported, who changed settings or permissions, what an integration account did).
//!
//! It is one streaming pass: each trail is read line by line, the trails merged by the events'
//! times, and a line is parsed only when the words the filter needs occur in it (found with
//! `memchr`'s substring search). Memory stays flat whatever the trails' size.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::at_rest::{Decoded, LineDecoder};

/// Rows above this many in one export make it a bulk export (the baseline's
/// `limits.bulk-export-fresh-mfa` threshold).
pub const BULK_ROWS: u64 = 500;

/// What a query asks for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The actor's id (a user's subject, an integration account's name).
    pub actor: Option<String>,
    /// `user`, `service_account` or `admin`.
    pub principal_type: Option<String>,
    /// A Cedar action, or a prefix ending in `*` (`export:*`).
    pub action: Option<String>,
    /// The event's category (`authentication`, `export`, `administration`…).
    pub category: Option<String>,
    /// The resource's type (`Invoice`).
    pub resource_type: Option<String>,
    /// The resource's id (`INV-1`).
    pub resource_id: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// A status (`403`) or a class (`4xx`).
    pub status: Option<String>,
    /// The client's address.
    pub source_ip: Option<String>,
    /// The least severity shown (`info` < `warning` < `high` < `error` < `critical`).
    pub min_severity: Option<String>,
    /// Events at or after this time.
    pub from: Option<Bound>,
    /// Events before this time.
    pub to: Option<Bound>,
    /// Exports only above [`BULK_ROWS`] rows (asked or returned).
    pub bulk: bool,
    /// Also the `authorized` events written before forwarding (by default only `complete` ones).
    pub all_stages: bool,
}

/// A time bound: `YYYY-MM-DD` (midnight UTC) or RFC 3339. Bounds order as the times they are.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bound(String);

impl std::str::FromStr for Bound {
    type Err = String;

    /// The bound as the events write times: UTC, `YYYY-MM-DDTHH:MM:SS`, compared as text.
    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = if text.len() == 10 {
            OffsetDateTime::parse(&format!("{text}T00:00:00Z"), &Rfc3339)
        } else {
            OffsetDateTime::parse(text, &Rfc3339)
        }
        .map_err(|_| format!("`{text}` is not a date (2026-12-01) or an RFC 3339 time"))?;
        let utc = parsed.to_offset(time::UtcOffset::UTC);
        Ok(Self(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        )))
    }
}

impl std::fmt::Display for Bound {
    /// The bound as written in events: `YYYY-MM-DDTHH:MM:SS` (UTC).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A period that holds no time (`from` not before `to`), said in words; `None` when it is fine.
pub fn empty_period(from: Option<&Bound>, to: Option<&Bound>) -> Option<String> {
    match (from, to) {
        (Some(from), Some(to)) if from >= to => Some(format!(
            "--from {from} is not before --to {to} (--to is exclusive): no event can match"
        )),
        _ => None,
    }
}

/// The event fields a query reads (borrowed from the line where they need no unescaping).
#[derive(Debug, Deserialize)]
pub struct View<'a> {
    /// `complete` or `authorized`.
    #[serde(borrow)]
    pub stage: Cow<'a, str>,
    /// When the request arrived (RFC 3339, UTC).
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    /// The replica that wrote it.
    #[serde(borrow, default)]
    pub instance: Cow<'a, str>,
    /// The request id.
    #[serde(borrow)]
    pub request_id: Cow<'a, str>,
    /// The caller, when authenticated.
    #[serde(borrow)]
    pub actor: Option<ActorView<'a>>,
    /// Where the request came from.
    #[serde(borrow)]
    pub source: SourceView<'a>,
    /// The request.
    #[serde(borrow)]
    pub request: RequestView<'a>,
    /// The Cedar action, when a route matched.
    #[serde(borrow)]
    pub action: Option<Cow<'a, str>>,
    /// The Cedar resource, when a route matched.
    #[serde(borrow)]
    pub resource: Option<ResourceView<'a>>,
    /// A break-glass reason, if one was stated.
    #[serde(borrow)]
    pub break_glass_reason: Option<Cow<'a, str>>,
    /// What was decided.
    #[serde(borrow)]
    pub decision: DecisionView<'a>,
    /// How it ended.
    pub outcome: OutcomeView,
    /// `info` to `critical`.
    #[serde(borrow)]
    pub severity: Cow<'a, str>,
    /// What the event is about.
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    /// A lifecycle event's subject and what was done.
    #[serde(default)]
    pub lifecycle: Option<LifecycleView>,
}

/// A lifecycle event's record (a security event from the IdP, a grant, a role change seen).
#[derive(Debug, Default, Deserialize)]
pub struct LifecycleView {
    /// Whom it is about.
    #[serde(default)]
    pub subject: String,
    /// `ssf`, `grant` or `roles_changed`.
    #[serde(default)]
    pub source: String,
    /// A security event's type URI.
    pub event_type: Option<String>,
    /// A security event's transmitter.
    pub transmitter: Option<String>,
    /// Roles before and after.
    pub roles_before: Option<Vec<String>>,
    /// Roles after.
    pub roles_after: Option<Vec<String>>,
    /// A grant's role.
    pub role: Option<String>,
    /// A grant's end.
    pub until_unix: Option<u64>,
    /// A grant's ticket.
    pub ticket: Option<String>,
    /// A grant's or an event's reason.
    pub reason: Option<String>,
    /// What the gateway did.
    #[serde(default)]
    pub acted: Vec<String>,
}

/// The caller.
#[derive(Debug, Deserialize)]
pub struct ActorView<'a> {
    /// `user`, `service_account` or `admin`.
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    /// The subject or account.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// How the caller authenticated.
    #[serde(borrow)]
    pub auth_method: Cow<'a, str>,
    /// Whether the login was multi-factor.
    #[serde(default)]
    pub mfa: bool,
    /// The IdP's authentication context class.
    #[serde(borrow, default)]
    pub acr: Option<Cow<'a, str>>,
    /// The Cedar roles the caller held.
    #[serde(borrow, default)]
    pub roles: Vec<Cow<'a, str>>,
}

/// Where the request came from.
#[derive(Debug, Deserialize)]
pub struct SourceView<'a> {
    /// The client's address.
    #[serde(borrow)]
    pub ip: Cow<'a, str>,
}

/// What was asked.
#[derive(Debug, Deserialize)]
pub struct RequestView<'a> {
    /// The HTTP method.
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    /// The normalized path.
    #[serde(borrow)]
    pub path: Cow<'a, str>,
}

/// The resource.
#[derive(Debug, Deserialize)]
pub struct ResourceView<'a> {
    /// Its type, e.g. `Invoice`.
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    /// Its id; `*` for a collection.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

/// What was decided.
#[derive(Debug, Deserialize)]
pub struct DecisionView<'a> {
    /// `allow` or `deny`.
    #[serde(borrow)]
    pub effect: Cow<'a, str>,
    /// The reason code.
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    /// The `@id`s of the policies that decided.
    #[serde(borrow, default)]
    pub policies: Vec<Cow<'a, str>>,
    /// The detail, when there is one.
    #[serde(borrow, default)]
    pub detail: Option<Cow<'a, str>>,
    /// The policy set's version that decided.
    #[serde(borrow, default)]
    pub policy_version: Cow<'a, str>,
}

/// How it ended.
#[derive(Debug, Deserialize)]
pub struct OutcomeView {
    /// The status the client got.
    pub status: u16,
    /// The rows an export returned.
    #[serde(default)]
    pub export_rows: Option<u64>,
}

impl View<'_> {
    /// The rows of an export: returned (settled), else none.
    fn export_rows(&self) -> Option<u64> {
        self.outcome.export_rows
    }
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "info" => 0,
        "warning" => 1,
        "high" => 2,
        "error" => 3,
        "critical" => 4,
        _ => 0,
    }
}

impl Filter {
    /// Words every matching line holds as written (JSON-escaped text aside): a line without them
    /// is skipped unparsed.
    fn needles(&self) -> Vec<Vec<u8>> {
        let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default().into_bytes();
        let mut needles = Vec::new();
        for value in [
            &self.actor,
            &self.resource_id,
            &self.category,
            &self.source_ip,
        ]
        .into_iter()
        .flatten()
        {
            needles.push(quoted(value));
        }
        if let Some(action) = &self.action {
            let prefix = action.trim_end_matches('*');
            let mut needle = b"\"".to_vec();
            needle.extend_from_slice(
                serde_json::to_string(prefix)
                    .unwrap_or_default()
                    .trim_matches('"')
                    .as_bytes(),
            );
            needles.push(needle);
        }
        needles
    }

    /// Whether a parsed event matches.
    pub fn matches(&self, event: &View<'_>) -> bool {
        let equal = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|want| have == Some(want))
        };
        let actor = event.actor.as_ref();
        let resource = event.resource.as_ref();
        let time = event.time.get(..19).unwrap_or(&event.time);
        (self.all_stages || event.stage == "complete")
            && equal(&self.actor, actor.map(|a| a.id.as_ref()))
            && equal(&self.principal_type, actor.map(|a| a.kind.as_ref()))
            && equal(&self.category, Some(&event.category))
            && equal(&self.resource_type, resource.map(|r| r.kind.as_ref()))
            && equal(&self.resource_id, resource.map(|r| r.id.as_ref()))
            && equal(&self.decision, Some(&event.decision.effect))
            && equal(&self.source_ip, Some(&event.source.ip))
            && self.action.as_deref().is_none_or(|want| {
                let have = event.action.as_deref().unwrap_or_default();
                match want.strip_suffix('*') {
                    Some(prefix) => have.starts_with(prefix),
                    None => have == want,
                }
            })
            && self.status.as_deref().is_none_or(|want| {
                let have = event.outcome.status.to_string();
                match want.strip_suffix("xx") {
                    Some(class) => have.starts_with(class),
                    None => have == want,
                }
            })
            && self
                .min_severity
                .as_deref()
                .is_none_or(|least| severity_rank(&event.severity) >= severity_rank(least))
            && self
                .from
                .as_ref()
                .is_none_or(|from| time >= from.0.as_str())
            && self.to.as_ref().is_none_or(|to| time < to.0.as_str())
            && (!self.bulk || event.export_rows().is_some_and(|rows| rows > BULK_ROWS))
    }
}

/// One trail: its files, oldest first.
fn files_of(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_dir() {
        Ok(crate::segments(path)
            .map_err(|error| named(path, &error))?
            .into_iter()
            .map(|(_, file)| file)
            .collect())
    } else {
        std::fs::metadata(path).map_err(|error| named(path, &error))?;
        Ok(vec![path.to_owned()])
    }
}

/// An I/O error that names the file it is about.
fn named(path: &Path, error: &std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("`{}`: {error}", path.display()))
}

/// A trail read line by line across its files (a sealed segment's lines opened).
struct Trail {
    files: std::vec::IntoIter<PathBuf>,
    reader: Option<(BufReader<std::fs::File>, PathBuf, LineDecoder)>,
}

impl Trail {
    fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            files: files_of(path)?.into_iter(),
            reader: None,
        })
    }

    /// The next event's line (without its newline); `None` at the end of the last file. A
    /// sealed line that cannot be opened (its key not given) is an error naming the file.
    fn next_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<bool> {
        loop {
            if let Some((reader, file, decoder)) = &mut self.reader {
                line.clear();
                if reader.read_until(b'\n', line)? > 0 {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    match decoder.line(line) {
                        Decoded::Event(Cow::Borrowed(_)) => {}
                        Decoded::Event(Cow::Owned(plain)) => *line = plain,
                        Decoded::Header => continue,
                        Decoded::Unreadable(why) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("`{}`: {why}", file.display()),
                            ));
                        }
                    }
                    return Ok(true);
                }
            }
            match self.files.next() {
                Some(file) => {
                    let reader = BufReader::with_capacity(
                        256 * 1024,
                        std::fs::File::open(&file).map_err(|error| named(&file, &error))?,
                    );
                    self.reader = Some((reader, file, LineDecoder::new()));
                }
                None => return Ok(false),
            }
        }
    }
}

/// The `time` of an event line, found without parsing it.
fn time_of(line: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"time\":\"";
    let Some(at) = memchr::memmem::find(line, KEY) else {
        return b"";
    };
    let rest = &line[at + KEY.len()..];
    let end = memchr::memchr(b'"', rest).unwrap_or(rest.len());
    &rest[..end]
}

/// Reads every trail, merged by time, and hands each event line that matches to `found` with its
/// parsed view. Lines that are not audit events (another format, a torn line) are skipped and
/// counted. Returns the lines read and the lines skipped.
pub fn scan(
    paths: &[PathBuf],
    filter: &Filter,
    mut found: impl FnMut(&[u8], &View<'_>),
) -> std::io::Result<(u64, u64)> {
    let words = filter.needles();
    let needles: Vec<memchr::memmem::Finder<'_>> =
        words.iter().map(memchr::memmem::Finder::new).collect();
    let mut trails = paths
        .iter()
        .map(|path| Trail::open(path))
        .collect::<std::io::Result<Vec<_>>>()?;
    // The next line of each trail, ordered by its time (then by trail, to keep a trail's order).
    let mut lines: Vec<Vec<u8>> = vec![Vec::new(); trails.len()];
    let mut heads = BinaryHeap::new();
    for (index, trail) in trails.iter_mut().enumerate() {
        if trail.next_line(&mut lines[index])? {
            heads.push(Reverse((time_of(&lines[index]).to_vec(), index)));
        }
    }
    let (mut read, mut skipped) = (0, 0);
    while let Some(Reverse((_, index))) = heads.pop() {
        read += 1;
        let line = &lines[index];
        if needles.iter().all(|needle| needle.find(line).is_some()) {
            match serde_json::from_slice::<View<'_>>(line) {
                Ok(view) if filter.matches(&view) => found(line, &view),
                Ok(_) => {}
                Err(_) => skipped += 1,
            }
        }
        if trails[index].next_line(&mut lines[index])? {
            heads.push(Reverse((time_of(&lines[index]).to_vec(), index)));
        }
    }
    Ok((read, skipped))
}

/// One caller's requests, for "who logged in, when and how".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The caller.
    pub actor: String,
    /// `user` or `service_account`.
    pub kind: String,
    /// How they authenticated (`bearer_jwt`, `api_key`…).
    pub method: String,
    /// Whether the login was multi-factor.
    pub mfa: bool,
    /// From where.
    pub source_ip: String,
    /// The first request seen.
    pub first: String,
    /// The last request seen.
    pub last: String,
    /// Requests.
    pub requests: u64,
    /// Requests refused.
    pub denied: u64,
}

/// Refused credentials from one address, for "who logged in": failed logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLogins {
    /// From where.
    pub source_ip: String,
    /// The reason codes seen, e.g. `bad_signature`.
    pub reasons: Vec<String>,
    /// The first refusal.
    pub first: String,
    /// The last refusal.
    pub last: String,
    /// Refusals.
    pub count: u64,
}

/// Who logged in, when and how: each caller's requests by method, MFA and address; and the
/// refused credentials by address.
#[derive(Debug, Default)]
pub struct Logins {
    by_caller: BTreeMap<(String, String, bool, String), Login>,
    failed: BTreeMap<String, FailedLogins>,
}

impl Logins {
    /// Counts one event.
    pub fn add(&mut self, event: &View<'_>) {
        let time = event.time.to_string();
        if let Some(actor) = &event.actor {
            let key = (
                actor.id.to_string(),
                actor.auth_method.to_string(),
                actor.mfa,
                event.source.ip.to_string(),
            );
            let login = self.by_caller.entry(key).or_insert_with(|| Login {
                actor: actor.id.to_string(),
                kind: actor.kind.to_string(),
                method: actor.auth_method.to_string(),
                mfa: actor.mfa,
                source_ip: event.source.ip.to_string(),
                first: time.clone(),
                last: time.clone(),
                requests: 0,
                denied: 0,
            });
            login.last = time;
            login.requests += 1;
            login.denied += u64::from(event.decision.effect == "deny");
        } else if event.category == "authentication" {
            let failed = self
                .failed
                .entry(event.source.ip.to_string())
                .or_insert_with(|| FailedLogins {
                    source_ip: event.source.ip.to_string(),
                    reasons: Vec::new(),
                    first: time.clone(),
                    last: time.clone(),
                    count: 0,
                });
            failed.last = time;
            failed.count += 1;
            let reason = event
                .decision
                .detail
                .as_deref()
                .unwrap_or(&event.decision.reason)
                .to_owned();
            if !failed.reasons.contains(&reason) {
                failed.reasons.push(reason);
            }
        }
    }

    /// The callers, by name.
    pub fn callers(&self) -> impl Iterator<Item = &Login> {
        self.by_caller.values()
    }

    /// The refused credentials, by address.
    pub fn failed(&self) -> impl Iterator<Item = &FailedLogins> {
        self.failed.values()
    }
}

#[cfg(test)]
mod tests;
