//! Sealed archives of the spool (`[audit.archive]`): a segment every sink has delivered is not
//! deleted but compressed (zstd) into the archive folder, as it was (a sealed segment stays
//! sealed), with a manifest signed with Ed25519 — the instance, first and last `seq`, the chain
//! hashes at both ends (the first event's `prev_hash`, the last event's own hash), the first and
//! last times, and the SHA-256 of the archive file. Archives older than `keep_days`, or beyond
//! `max_bytes` (oldest first), are deleted, each deletion recorded as an audit event.
//!
//! [`verify_archives`] checks every manifest's signature, every file's hash, and the chain across
//! archives (a gap — an archive removed — is named by the `seq`s missing); [`restore`] writes a
//! verified range back as spool segments and reports what it restored, and how it verified.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::at_rest::{Decoded, LineDecoder};
use crate::chain::{Chain, GENESIS};

/// The `[audit.archive]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// The archive folder (a local path, or a mounted bucket); created 0700.
    pub dir: PathBuf,
    /// The Ed25519 private key (PKCS#8 PEM, as `invoiceguard policy keygen` prints) that signs
    /// each archive's manifest.
    pub signing_key_file: PathBuf,
    /// Archives older than this many days are deleted (default 400: a year and its audit).
    #[serde(default = "default_keep_days")]
    pub keep_days: u64,
    /// The most bytes the archives may hold; the oldest are deleted beyond it (default 10 GiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_keep_days() -> u64 {
    400
}

fn default_max_bytes() -> u64 {
    10 * 1024 * 1024 * 1024
}

impl ArchiveConfig {
    /// Every problem, as `audit.archive.key: problem`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(problem) = read_signing_key(&self.signing_key_file) {
            problems.push(format!("audit.archive.signing_key_file: {problem}"));
        }
        if self.keep_days == 0 {
            problems.push("audit.archive.keep_days: at least 1".to_owned());
        }
        if self.max_bytes < 1024 * 1024 {
            problems.push("audit.archive.max_bytes: at least 1048576".to_owned());
        }
        if self.dir.exists() && !self.dir.is_dir() {
            problems.push(format!(
                "audit.archive.dir: `{}` is not a folder",
                self.dir.display()
            ));
        }
        problems
    }
}

/// Reads an Ed25519 private key: PKCS#8, in PEM or bare base64.
fn read_signing_key(path: &Path) -> Result<Ed25519KeyPair, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD
        .decode(body.trim())
        .map_err(|_| format!("`{}` is not a PEM private key", path.display()))?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| {
        format!(
            "`{}` is not an Ed25519 private key (PKCS#8; `invoiceguard policy keygen` writes one)",
            path.display()
        )
    })
}

/// One archived segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedFile {
    /// The archive file's name in the folder.
    pub name: String,
    /// The segment it holds.
    pub segment: String,
    /// SHA-256 (hex) of the archive file.
    pub sha256: String,
    /// Its bytes.
    pub bytes: u64,
    /// The segment's bytes (before compression).
    pub segment_bytes: u64,
}

/// An archive's manifest, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format (1).
    pub version: u32,
    /// The gateway that wrote the events.
    pub instance: String,
    /// The first and last `seq`.
    pub first_seq: u64,
    /// The last `seq`.
    pub last_seq: u64,
    /// Events archived.
    pub events: u64,
    /// The first event's `prev_hash` (the chain before the archive).
    pub first_prev_hash: String,
    /// The last event's hash (what the next archive's first event chains to).
    pub last_hash: String,
    /// The first event's time.
    pub first_time: String,
    /// The last event's time.
    pub last_time: String,
    /// When the archive was written.
    pub archived: String,
    /// The files, each with its SHA-256.
    pub files: Vec<ArchivedFile>,
    /// The signing key's public half (base64).
    pub public_key: String,
    /// Ed25519 signature (base64) over the manifest without this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Manifest {
    /// The bytes the signature covers: the manifest without its signature.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }
}

/// What an archived segment's events are, read from its lines.
struct Span {
    first_seq: u64,
    last_seq: u64,
    events: u64,
    first_prev_hash: String,
    last_hash: String,
    first_time: String,
    last_time: String,
}

/// Reads a segment's events (sealed lines opened): its span, and the problems found in it
/// (lines that cannot be opened or read, a chain broken inside it).
fn span_of(bytes: &[u8], chain: &Chain) -> (Option<Span>, Vec<String>) {
    let mut decoder = LineDecoder::new();
    let mut span: Option<Span> = None;
    let mut problems = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let plain = match decoder.line(line) {
            Decoded::Header => continue,
            Decoded::Unreadable(why) => {
                problems.push(format!("line {}: {why}", index + 1));
                continue;
            }
            Decoded::Event(plain) => plain,
        };
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(&plain) else {
            problems.push(format!("line {}: not an audit event", index + 1));
            continue;
        };
        let seq = event["seq"].as_u64().unwrap_or(0);
        let prev = event["prev_hash"].as_str().unwrap_or_default().to_owned();
        let time = event["time"].as_str().unwrap_or_default().to_owned();
        let hash = chain.hash(&plain);
        match &mut span {
            None => {
                span = Some(Span {
                    first_seq: seq,
                    last_seq: seq,
                    events: 1,
                    first_prev_hash: prev,
                    last_hash: hash,
                    first_time: time.clone(),
                    last_time: time,
                });
            }
            Some(span) => {
                if seq != span.last_seq + 1 {
                    problems.push(format!(
                        "line {}: seq {seq} follows {}",
                        index + 1,
                        span.last_seq
                    ));
                }
                if prev != span.last_hash {
                    problems.push(format!("line {}: the chain breaks at seq {seq}", index + 1));
                }
                span.last_seq = seq;
                span.events += 1;
                span.last_hash = hash;
                span.last_time = time;
            }
        }
    }
    (span, problems)
}

/// Makes archives of delivered segments (the spool's archive thread; public for the bench).
pub struct Archiver {
    config: ArchiveConfig,
    key: Ed25519KeyPair,
    chain: Chain,
    instance: String,
}

fn private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

impl Archiver {
    /// The archiver of a configuration: its key read, its folder made (0700).
    pub fn new(config: &ArchiveConfig, chain: Chain, instance: String) -> Result<Self, String> {
        let key = read_signing_key(&config.signing_key_file)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.dir)
            .map_err(|error| format!("cannot make `{}`: {error}", config.dir.display()))?;
        Ok(Self {
            config: config.clone(),
            key,
            chain,
            instance,
        })
    }

    /// The archive folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Archives one delivered segment: compressed, hashed, its manifest signed and written
    /// last (an archive without a manifest is not one). `None` for a segment without events.
    pub fn archive(&self, segment: &Path) -> Result<Option<Manifest>, String> {
        let bytes = std::fs::read(segment)
            .map_err(|error| format!("cannot read `{}`: {error}", segment.display()))?;
        let (span, problems) = span_of(&bytes, &self.chain);
        if let Some(problem) = problems.first() {
            return Err(format!("`{}`: {problem}", segment.display()));
        }
        let Some(span) = span else {
            return Ok(None);
        };
        let compressed = zstd::encode_all(&bytes[..], 3)
            .map_err(|error| format!("cannot compress `{}`: {error}", segment.display()))?;
        let stem = format!("{:020}-{:020}", span.first_seq, span.last_seq);
        let name = format!("{stem}.jsonl.zst");
        let path = self.config.dir.join(&name);
        private_file(&path, &compressed)
            .map_err(|error| format!("cannot write `{}`: {error}", path.display()))?;
        let mut manifest = Manifest {
            version: 1,
            instance: self.instance.clone(),
            first_seq: span.first_seq,
            last_seq: span.last_seq,
            events: span.events,
            first_prev_hash: span.first_prev_hash,
            last_hash: span.last_hash,
            first_time: span.first_time,
            last_time: span.last_time,
            archived: crate::event::now_rfc3339(),
            files: vec![ArchivedFile {
                name,
                segment: segment
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: sha256_hex(&compressed),
                bytes: compressed.len() as u64,
                segment_bytes: bytes.len() as u64,
            }],
            public_key: STANDARD.encode(self.key.public_key().as_ref()),
            signature: None,
        };
        manifest.signature =
            Some(STANDARD.encode(self.key.sign(&manifest.signed_bytes()).as_ref()));
        let manifest_path = self.config.dir.join(format!("{stem}.manifest.json"));
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
        private_file(&manifest_path, &text)
            .map_err(|error| format!("cannot write `{}`: {error}", manifest_path.display()))?;
        if let Ok(dir) = std::fs::File::open(&self.config.dir) {
            let _ = dir.sync_all();
        }
        Ok(Some(manifest))
    }

    /// Deletes archives past `keep_days` or beyond `max_bytes`, oldest first: what was deleted.
    pub(crate) fn retain(&self) -> Vec<String> {
        let Ok(archives) = manifests(&self.config.dir) else {
            return Vec::new();
        };
        let now = time::OffsetDateTime::now_utc();
        let keep = time::Duration::days(i64::try_from(self.config.keep_days).unwrap_or(i64::MAX));
        let mut total: u64 = archives
            .iter()
            .filter_map(|(_, m)| m.as_ref().ok())
            .flat_map(|m| &m.files)
            .map(|f| f.bytes)
            .sum();
        let mut deleted = Vec::new();
        for (path, manifest) in archives {
            let Ok(manifest) = manifest else { continue };
            let archived = time::OffsetDateTime::parse(
                &manifest.archived,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap_or(now);
            let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
            let too_old = now - archived > keep;
            if !too_old && total <= self.config.max_bytes {
                break;
            }
            for file in &manifest.files {
                let _ = std::fs::remove_file(self.config.dir.join(&file.name));
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(bytes);
                deleted.push(format!(
                    "archive of seq {} to {} ({} events, {} to {}) deleted: {}",
                    manifest.first_seq,
                    manifest.last_seq,
                    manifest.events,
                    manifest.first_time,
                    manifest.last_time,
                    if too_old {
                        format!(
                            "older than audit.archive.keep_days ({})",
                            self.config.keep_days
                        )
                    } else {
                        format!(
                            "the archives hold more than audit.archive.max_bytes ({})",
                            self.config.max_bytes
                        )
                    }
                ));
            }
        }
        deleted
    }
}

/// The manifests of an archive folder, by first `seq`: each read, or why it could not be.
fn manifests(dir: &Path) -> std::io::Result<Vec<(PathBuf, Result<Manifest, String>)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".manifest.json"))
        {
            let manifest = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Manifest>(&bytes).map_err(|e| e.to_string())
                });
            found.push((path, manifest));
        }
    }
    found.sort_by_key(|(path, _)| path.clone());
    Ok(found)
}

/// What `archive verify` found.
#[derive(Debug, Default, Serialize)]
pub struct ArchiveCheck {
    /// Archives read.
    pub archives: usize,
    /// Events in them.
    pub events: u64,
    /// The first and last `seq` over all of them.
    pub seq_range: Option<(u64, u64)>,
    /// Every problem: a bad signature, a changed or missing file, a broken chain, a gap.
    pub problems: Vec<String>,
    /// What is worth knowing but no problem.
    pub notes: Vec<String>,
}

impl ArchiveCheck {
    /// Whether nothing is wrong.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty() && self.archives > 0
    }
}

/// One archive read and checked: its manifest, its segment's bytes (decompressed), problems.
fn check_archive(
    dir: &Path,
    path: &Path,
    manifest: &Manifest,
    trusted: &[String],
    chain: &Chain,
) -> (Option<Vec<u8>>, Vec<String>) {
    let name = path.display();
    let mut problems = Vec::new();
    let signed_by_trusted = trusted.is_empty() || trusted.contains(&manifest.public_key);
    let signature_ok = manifest.signature.as_ref().is_some_and(|signature| {
        let key = STANDARD.decode(&manifest.public_key).unwrap_or_default();
        let signature = STANDARD.decode(signature).unwrap_or_default();
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&manifest.signed_bytes(), &signature)
            .is_ok()
    });
    if !signature_ok {
        problems.push(format!(
            "{name}: the manifest's signature does not verify (changed)"
        ));
    } else if !signed_by_trusted {
        problems.push(format!(
            "{name}: signed by a key that is not trusted ({})",
            manifest.public_key
        ));
    }
    let mut segment = None;
    for file in &manifest.files {
        let file_path = dir.join(&file.name);
        match std::fs::read(&file_path) {
            Err(error) => problems.push(format!("{}: missing ({error})", file_path.display())),
            Ok(bytes) if sha256_hex(&bytes) != file.sha256 => problems.push(format!(
                "{}: its SHA-256 is not the manifest's: changed",
                file_path.display()
            )),
            Ok(bytes) => match zstd::decode_all(&bytes[..]) {
                Ok(plain) => segment = Some(plain),
                Err(error) => problems.push(format!(
                    "{}: cannot decompress: {error}",
                    file_path.display()
                )),
            },
        }
    }
    if let Some(bytes) = &segment {
        let (span, inside) = span_of(bytes, chain);
        problems.extend(inside.into_iter().map(|p| format!("{name}: {p}")));
        match span {
            Some(span)
                if span.first_seq == manifest.first_seq
                    && span.last_seq == manifest.last_seq
                    && span.first_prev_hash == manifest.first_prev_hash
                    && span.last_hash == manifest.last_hash => {}
            _ => problems.push(format!(
                "{name}: the events are not those the manifest names (seq {} to {})",
                manifest.first_seq, manifest.last_seq
            )),
        }
    }
    (segment, problems)
}

/// Checks an archive folder: every manifest's signature (by one of `trusted`, base64 Ed25519
/// public keys; with none given, by the key each names — noted), every file's hash, the events
/// against their manifest, and the chain from one archive to the next; a gap is named by the
/// `seq`s missing.
pub fn verify_archives(
    dir: &Path,
    trusted: &[String],
    chain: &Chain,
) -> std::io::Result<ArchiveCheck> {
    verify_selected(dir, trusted, chain, |_| true).map(|(check, _)| check)
}

/// An archive kept for a restore: its manifest and segment bytes.
type Kept = Vec<(Manifest, Vec<u8>)>;

fn verify_selected(
    dir: &Path,
    trusted: &[String],
    chain: &Chain,
    select: impl Fn(&Manifest) -> bool,
) -> std::io::Result<(ArchiveCheck, Kept)> {
    let mut check = ArchiveCheck::default();
    let mut kept = Vec::new();
    if trusted.is_empty() {
        check.notes.push(
            "no --trusted-key given: each manifest is checked with the key it names".to_owned(),
        );
    }
    let mut previous: Option<Manifest> = None;
    for (path, manifest) in manifests(dir)? {
        let manifest = match manifest {
            Ok(manifest) => manifest,
            Err(error) => {
                check
                    .problems
                    .push(format!("{}: unreadable manifest: {error}", path.display()));
                continue;
            }
        };
        if !select(&manifest) {
            previous = Some(manifest);
            continue;
        }
        check.archives += 1;
        check.events += manifest.events;
        if let Some(before) = &previous {
            if manifest.first_seq > before.last_seq + 1 {
                check.problems.push(format!(
                    "seq {} to {} missing between archives: an archive is gone",
                    before.last_seq + 1,
                    manifest.first_seq - 1
                ));
            } else if manifest.first_prev_hash != before.last_hash {
                check.problems.push(format!(
                    "{}: its first event does not chain to the archive before it",
                    path.display()
                ));
            }
        } else if manifest.first_seq == 1 && manifest.first_prev_hash != GENESIS {
            check.problems.push(format!(
                "{}: seq 1 does not start the chain",
                path.display()
            ));
        } else if manifest.first_seq > 1 {
            check.notes.push(format!(
                "the archives start at seq {}: earlier events are not here",
                manifest.first_seq
            ));
        }
        let (segment, problems) = check_archive(dir, &path, &manifest, trusted, chain);
        check.problems.extend(problems);
        check.seq_range = Some(match check.seq_range {
            None => (manifest.first_seq, manifest.last_seq),
            Some((first, _)) => (first, manifest.last_seq),
        });
        if let Some(segment) = segment {
            kept.push((manifest.clone(), segment));
        }
        previous = Some(manifest);
    }
    Ok((check, kept))
}

/// What a restore did: the restore test report the evidence pack carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    /// When the restore ran.
    pub restored_at: String,
    /// The archive folder and the spool folder written.
    pub from: String,
    /// The folder restored into.
    pub to: String,
    /// The time range asked (RFC 3339; empty: unbounded).
    pub from_time: String,
    /// The end of the range asked.
    pub to_time: String,
    /// The archives restored: file, seq range, events, SHA-256.
    pub archives: Vec<RestoredArchive>,
    /// Events restored.
    pub events: u64,
    /// The first and last `seq` restored.
    pub seq_range: Option<(u64, u64)>,
    /// The hash of the last event restored.
    pub head: Option<String>,
    /// The archives' check (signatures, hashes, chain across them) passed.
    pub archives_verified: bool,
    /// `audit verify` of the restored folder passed.
    pub restored_verified: bool,
    /// Every problem either check found.
    pub problems: Vec<String>,
}

/// One archive in a restore report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoredArchive {
    /// The archive file.
    pub file: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Its first `seq`.
    pub first_seq: u64,
    /// Its last `seq`.
    pub last_seq: u64,
    /// Its events.
    pub events: u64,
}

/// The name of the report a restore writes in its folder.
pub const RESTORE_REPORT: &str = "restore-report.json";

/// Restores the archives whose events fall in `[from_time, to_time)` (RFC 3339; `None`:
/// unbounded) into `to` as spool segments, after checking them; then verifies the restored folder
/// as `audit verify` does, and writes the report (`restore-report.json`) there. An archive with a
/// problem is not restored; the report says why.
pub fn restore(
    from: &Path,
    to: &Path,
    from_time: Option<&str>,
    to_time: Option<&str>,
    trusted: &[String],
    chain: &Chain,
) -> Result<RestoreReport, String> {
    let in_range = |manifest: &Manifest| {
        from_time.is_none_or(|from| manifest.last_time.as_str() >= from)
            && to_time.is_none_or(|to| manifest.first_time.as_str() < to)
    };
    let (check, kept) = verify_selected(from, trusted, chain, in_range)
        .map_err(|error| format!("cannot read `{}`: {error}", from.display()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)
        .map_err(|error| format!("cannot make `{}`: {error}", to.display()))?;
    let mut archives = Vec::new();
    if check.problems.is_empty() {
        for (manifest, segment) in &kept {
            let path = crate::spool::segment_path(to, manifest.first_seq);
            private_file(&path, segment)
                .map_err(|error| format!("cannot write `{}`: {error}", path.display()))?;
            let file = manifest.files.first();
            archives.push(RestoredArchive {
                file: file.map(|f| f.name.clone()).unwrap_or_default(),
                sha256: file.map(|f| f.sha256.clone()).unwrap_or_default(),
                first_seq: manifest.first_seq,
                last_seq: manifest.last_seq,
                events: manifest.events,
            });
        }
    }
    let mut problems = check.problems.clone();
    let (restored_verified, head, events, seq_range) = if archives.is_empty() {
        if problems.is_empty() {
            problems.push("no archive holds events in the range asked".to_owned());
        }
        (false, None, 0, None)
    } else {
        let continues = archives.first().is_some_and(|a| a.first_seq > 1);
        let files: Vec<PathBuf> = crate::spool::segments(to)
            .map_err(|error| format!("cannot read `{}`: {error}", to.display()))?
            .into_iter()
            .map(|(_, path)| path)
            .collect();
        let verification = crate::verify::verify(&files, chain, continues);
        problems.extend(verification.problems.iter().cloned());
        (
            verification.is_intact(),
            verification.head.clone(),
            verification.events,
            verification.seq_range,
        )
    };
    let report = RestoreReport {
        restored_at: crate::event::now_rfc3339(),
        from: from.display().to_string(),
        to: to.display().to_string(),
        from_time: from_time.unwrap_or_default().to_owned(),
        to_time: to_time.unwrap_or_default().to_owned(),
        archives,
        events,
        seq_range,
        head,
        archives_verified: check.problems.is_empty() && check.archives > 0,
        restored_verified,
        problems,
    };
    let text = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
    private_file(&to.join(RESTORE_REPORT), &text)
        .map_err(|error| format!("cannot write the report: {error}"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditConfig, AuditEvent, AuditLog};

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "invoiceguard-archive-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A spool of `events` events in segments of about 4 KiB, and an archive of each closed one.
    fn archived(dir: &Path, events: usize) -> (ArchiveConfig, String) {
        let key = dir.join("archive.key");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        std::fs::write(
            &key,
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                STANDARD.encode(pkcs8.as_ref())
            ),
        )
        .unwrap();
        let public = STANDARD.encode(
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .unwrap()
                .public_key()
                .as_ref(),
        );
        let config = AuditConfig {
            spool: dir.join("spool"),
            segment_bytes: 4096,
            max_bytes: 1 << 20,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(&config).unwrap();
        for i in 0..events {
            log.record(AuditEvent::system(
                "audit:test",
                "info",
                format!("event {i}"),
            ))
            .unwrap();
        }
        drop(log);
        let archive = ArchiveConfig {
            dir: dir.join("archive"),
            signing_key_file: key,
            keep_days: 30,
            max_bytes: 1 << 30,
        };
        let archiver = Archiver::new(&archive, Chain::plain(), "gw-test".to_owned()).unwrap();
        let segments = crate::spool::segments(&config.spool).unwrap();
        for (_, path) in &segments[..segments.len() - 1] {
            archiver.archive(path).unwrap().unwrap();
        }
        (archive, public)
    }

    #[test]
    fn archives_verify_and_restore_and_a_change_or_a_gap_is_named() {
        let dir = folder("verify");
        let (archive, public) = archived(&dir, 60);
        let check =
            verify_archives(&archive.dir, std::slice::from_ref(&public), &Chain::plain()).unwrap();
        assert!(check.is_intact(), "{:?}", check.problems);
        assert!(check.archives >= 3, "{check:?}");
        assert_eq!(check.seq_range.unwrap().0, 1);
        // A restore of everything verifies, and reports it.
        let report = restore(
            &archive.dir,
            &dir.join("restored"),
            None,
            None,
            std::slice::from_ref(&public),
            &Chain::plain(),
        )
        .unwrap();
        assert!(
            report.archives_verified && report.restored_verified,
            "{report:?}"
        );
        assert_eq!(report.events, check.events);
        assert!(dir.join("restored").join(RESTORE_REPORT).is_file());
        // Another key is not trusted.
        let other = verify_archives(&archive.dir, &["AAAA".to_owned()], &Chain::plain()).unwrap();
        assert!(
            other.problems.iter().any(|p| p.contains("not trusted")),
            "{:?}",
            other.problems
        );
        // A changed archive file, and a removed archive.
        let manifests = manifests(&archive.dir).unwrap();
        let first: Manifest = manifests[0].1.clone().unwrap();
        let file = archive.dir.join(&first.files[0].name);
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let second: Manifest = manifests[1].1.clone().unwrap();
        std::fs::remove_file(&manifests[1].0).unwrap();
        let check =
            verify_archives(&archive.dir, std::slice::from_ref(&public), &Chain::plain()).unwrap();
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains(&first.files[0].name) && p.contains("changed")),
            "{:?}",
            check.problems
        );
        assert!(
            check.problems.iter().any(|p| p.contains(&format!(
                "seq {} to {} missing",
                second.first_seq, second.last_seq
            ))),
            "{:?}",
            check.problems
        );
        // Nothing is restored from a damaged archive folder; the report says why.
        let report = restore(
            &archive.dir,
            &dir.join("refused"),
            None,
            None,
            &[public],
            &Chain::plain(),
        )
        .unwrap();
        assert!(
            !report.archives_verified && report.archives.is_empty(),
            "{report:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn retention_deletes_the_oldest_beyond_the_cap() {
        let dir = folder("retain");
        let (mut archive, _) = archived(&dir, 60);
        let before = manifests(&archive.dir).unwrap().len();
        archive.max_bytes = 1;
        let archiver = Archiver::new(&archive, Chain::plain(), "gw-test".to_owned()).unwrap();
        let deleted = archiver.retain();
        assert_eq!(deleted.len(), before, "{deleted:?}");
        assert!(
            deleted[0].contains("audit.archive.max_bytes"),
            "{deleted:?}"
        );
        assert!(manifests(&archive.dir).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
