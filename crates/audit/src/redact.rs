//! Redaction: what must never be written to the audit trail is masked or hashed before an event
//! is encoded — bank account numbers and tax ids found in free text (paths, resource ids, user
//! agents, break-glass reasons, refusal details), configured fields whole, and anything shaped
//! like a JWT. Tokens, API keys and secrets are never put into events in the first place.

use aws_lc_rs::hmac;
use regex::Regex;
use serde::Deserialize;

use crate::event::AuditEvent;

/// Bank account numbers: an IBAN (country, check digits, 11 to 30 letters or digits, optionally
/// grouped by spaces).
const IBAN: &str = r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b";
/// VAT identification numbers of the EU member states and the UK, in their national formats.
const VAT_ID: &str = r"\b(?:ATU[0-9]{8}|BE[01][0-9]{9}|BG[0-9]{9,10}|CY[0-9]{8}[A-Z]|CZ[0-9]{8,10}|DE[0-9]{9}|DK[0-9]{8}|EE[0-9]{9}|EL[0-9]{9}|ES[0-9A-Z][0-9]{7}[0-9A-Z]|FI[0-9]{8}|FR[0-9A-Z]{2}[0-9]{9}|GB[0-9]{9}(?:[0-9]{3})?|HR[0-9]{11}|HU[0-9]{8}|IE[0-9][0-9A-Z][0-9]{5}[A-Z]{1,2}|IT[0-9]{11}|LT[0-9]{9,12}|LU[0-9]{8}|LV[0-9]{11}|MT[0-9]{8}|NL[0-9]{9}B[0-9]{2}|PL[0-9]{10}|PT[0-9]{9}|RO[0-9]{2,10}|SE[0-9]{12}|SI[0-9]{8}|SK[0-9]{10})\b";
/// A JWT, or a piece of one (base64url JSON, then up to two more parts): always masked.
const JWT: &str = r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}";

/// The fields that may be redacted whole.
const FIELDS: &[&str] = &[
    "actor.id",
    "actor.client_id",
    "source.ip",
    "source.user_agent",
    "request.path",
    "resource.id",
    "break_glass_reason",
    "decision.detail",
];

/// The `[audit.redact]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// `mask` (keep the last 4 characters, star the rest) or `hash` (`hmac:` and 16 hex digits
    /// of HMAC-SHA256 keyed with `[audit] hmac_key_file`: equal values stay correlatable).
    #[serde(default)]
    pub mode: Mode,
    /// What is looked for in every free-text field: `iban`, `vat_id`, or a regular expression.
    #[serde(default = "default_patterns")]
    pub patterns: Vec<String>,
    /// Fields redacted whole, e.g. `source.user_agent` or `resource.id`.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// How a value is redacted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `******************3000`
    #[default]
    Mask,
    /// `hmac:1f0c4e9a7b2d6e80`
    Hash,
}

fn default_patterns() -> Vec<String> {
    vec!["iban".to_owned(), "vat_id".to_owned()]
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Mask,
            patterns: default_patterns(),
            fields: Vec::new(),
        }
    }
}

impl RedactConfig {
    /// Checks the section, naming each problem with its key.
    pub fn validate(&self, keyed: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.mode == Mode::Hash && !keyed {
            problems.push(
                "audit.redact.mode: `hash` needs audit.hmac_key_file (unkeyed hashes of account numbers can be reversed by trying them all)"
                    .to_owned(),
            );
        }
        for (index, pattern) in self.patterns.iter().enumerate() {
            if let Err(error) = Regex::new(expand(pattern)) {
                problems.push(format!(
                    "audit.redact.patterns[{index}]: `{pattern}` is not `iban`, `vat_id` or a regular expression: {error}"
                ));
            }
        }
        for (index, field) in self.fields.iter().enumerate() {
            if !FIELDS.contains(&field.as_str()) {
                problems.push(format!(
                    "audit.redact.fields[{index}]: `{field}` is not one of {}",
                    FIELDS.join(", ")
                ));
            }
        }
        problems
    }
}

/// A built-in pattern's expression, or the pattern itself.
fn expand(pattern: &str) -> &str {
    match pattern {
        "iban" => IBAN,
        "vat_id" => VAT_ID,
        other => other,
    }
}

/// Applies a [`RedactConfig`] to events.
pub struct Redactor {
    mode: Mode,
    /// Every pattern in one alternation: one scan per field.
    pattern: Option<Regex>,
    fields: Vec<String>,
    key: Option<hmac::Key>,
}

impl Redactor {
    /// The redactor of a validated section; `key` is the audit HMAC secret. Patterns that do not
    /// compile (only possible for an unvalidated section) are skipped, with an error logged.
    pub fn new(config: &RedactConfig, key: Option<&[u8]>) -> Self {
        let mut parts = vec![JWT];
        for pattern in &config.patterns {
            match Regex::new(expand(pattern)) {
                Ok(_) => parts.push(expand(pattern)),
                Err(error) => tracing::error!(%error, pattern, "redaction pattern skipped"),
            }
        }
        let alternation: Vec<String> = parts.iter().map(|p| format!("(?:{p})")).collect();
        let pattern = Regex::new(&alternation.join("|"))
            .inspect_err(|error| tracing::error!(%error, "redaction patterns unusable together"))
            .ok();
        Self {
            mode: config.mode,
            pattern,
            fields: config.fields.clone(),
            key: key.map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret)),
        }
    }

    /// Redacts the event's free-text fields in place.
    pub fn apply(&self, event: &mut AuditEvent) {
        let visit = |name: &str, value: &mut String| {
            if self.fields.iter().any(|f| f == name) {
                *value = self.replacement(value);
            } else {
                self.scrub(value);
            }
        };
        if let Some(actor) = event.actor.as_mut() {
            visit("actor.id", &mut actor.id);
            if let Some(client) = actor.client_id.as_mut() {
                visit("actor.client_id", client);
            }
        }
        visit("source.ip", &mut event.source.ip);
        if let Some(agent) = event.source.user_agent.as_mut() {
            visit("source.user_agent", agent);
        }
        visit("request.path", &mut event.request.path);
        if let Some(resource) = event.resource.as_mut() {
            visit("resource.id", &mut resource.id);
        }
        if let Some(reason) = event.break_glass_reason.as_mut() {
            visit("break_glass_reason", reason);
        }
        if let Some(detail) = event.decision.detail.as_mut() {
            visit("decision.detail", detail);
        }
        // A decision's inputs repeat some of the fields above: redacted by the same rules.
        if let Some(inputs) = event.decision.inputs.as_mut() {
            visit("actor.id", &mut inputs.principal);
            if let Some(creator) = inputs.creator.as_mut() {
                visit("actor.id", creator);
            }
            visit("source.ip", &mut inputs.source_ip);
            if let Some(reason) = inputs.break_glass_reason.as_mut() {
                visit("break_glass_reason", reason);
            }
            for text in [
                &mut inputs.company,
                &mut inputs.status,
                &mut inputs.currency,
            ]
            .into_iter()
            .flatten()
            {
                self.scrub(text);
            }
        }
    }

    /// Replaces every match of a pattern in `value`.
    fn scrub(&self, value: &mut String) {
        if let Some(pattern) = &self.pattern
            && pattern.is_match(value)
        {
            *value = pattern
                .replace_all(value, |found: &regex::Captures<'_>| {
                    self.replacement(&found[0])
                })
                .into_owned();
        }
    }

    /// What a sensitive value is written as.
    fn replacement(&self, value: &str) -> String {
        match (self.mode, &self.key) {
            (Mode::Hash, Some(key)) => {
                let tag = hmac::sign(key, value.as_bytes());
                format!("hmac:{}", hex::encode(&tag.as_ref()[..8]))
            }
            _ => {
                let count = value.chars().count();
                let keep = if count > 8 { 4 } else { 0 };
                let mut masked = "*".repeat(count - keep);
                masked.extend(value.chars().skip(count - keep));
                masked
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(toml_text: &str, key: Option<&[u8]>) -> Redactor {
        let config: RedactConfig = toml::from_str(toml_text).unwrap();
        assert!(config.validate(key.is_some()).is_empty());
        Redactor::new(&config, key)
    }

    fn scrubbed(redactor: &Redactor, text: &str) -> String {
        let mut value = text.to_owned();
        redactor.scrub(&mut value);
        value
    }

    #[test]
    fn account_numbers_tax_ids_and_tokens_are_masked_by_default() {
        let r = redactor("", None);
        assert_eq!(
            scrubbed(&r, "/partners/DE89370400440532013000/bank-account"),
            "/partners/******************3000/bank-account"
        );
        assert_eq!(
            scrubbed(&r, "pay GB82 WEST 1234 5698 7654 32 now"),
            format!("pay {}4 32 now", "*".repeat(23))
        );
        assert_eq!(scrubbed(&r, "vat DE123456789"), "vat *******6789");
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        assert_eq!(
            scrubbed(&r, &format!("agent {jwt}")),
            format!("agent {}c2ln", "*".repeat(jwt.len() - 4))
        );
        assert_eq!(
            scrubbed(&r, "cut eyJhbGciOiJFUzI1NiIsInR5cCI6Im"),
            format!("cut {}I6Im", "*".repeat(26))
        );
        assert_eq!(scrubbed(&r, "/invoices/INV-1042"), "/invoices/INV-1042");
    }

    #[test]
    fn hashes_are_keyed_and_stable_and_fields_can_go_whole() {
        let r = redactor(
            "mode = \"hash\"\nfields = [\"source.user_agent\"]",
            Some(b"0123456789abcdef"),
        );
        let first = scrubbed(&r, "DE89370400440532013000");
        assert!(first.starts_with("hmac:") && first.len() == 21, "{first}");
        assert_eq!(first, scrubbed(&r, "DE89370400440532013000"));
        assert_ne!(first, scrubbed(&r, "DE89370400440532013001"));
        let config: RedactConfig = toml::from_str("mode = \"hash\"").unwrap();
        assert_eq!(config.validate(false).len(), 1, "hash needs a key");
        let config: RedactConfig =
            toml::from_str("patterns = [\"(\"]\nfields = [\"actor.roles\"]").unwrap();
        let problems = config.validate(false);
        assert!(
            problems[0].starts_with("audit.redact.patterns[0]"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("audit.redact.fields[0]"),
            "{problems:?}"
        );
    }
}
