//! The `[policy]` section of the configuration.

use std::path::PathBuf;

use serde::Deserialize;

/// Where the security team's policy folder is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The folder holding `schema.cedarschema`, `routes.toml` and the `*.cedar` policies; relative
    /// paths are taken from the configuration file's folder.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// How often the folder is checked for changes, in milliseconds (0: only on SIGHUP). A
    /// changed folder is loaded and checked as a whole, and replaces the running set only when it
    /// has no problem.
    #[serde(default = "default_watch_ms")]
    pub watch_ms: u64,
    /// A candidate policy folder evaluated beside the enforced one on live traffic (shadow
    /// mode): it never decides, and only where it would decide differently is that recorded in
    /// the audit event. Reloaded with the enforced folder.
    pub shadow_dir: Option<PathBuf>,
    /// How many recent decisions are kept, by everything they were decided on (0: none). A
    /// request whose principal, action, resource, resource facts and context — to the second —
    /// repeat one kept gets its decision without evaluating the policies again.
    #[serde(default = "default_decision_cache_entries")]
    pub decision_cache_entries: usize,
    /// Ed25519 public keys (base64, as `invoiceguard policy keygen` prints them): when any is
    /// given, a folder is loaded only with a valid `policy.sig` by one of them over exactly its
    /// files (`invoiceguard policy sign`); a reload that fails this is refused like an invalid
    /// set. Empty: signatures are not required.
    #[serde(default)]
    pub signed_by: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: default_dir(),
            watch_ms: default_watch_ms(),
            shadow_dir: None,
            decision_cache_entries: default_decision_cache_entries(),
            signed_by: Vec::new(),
        }
    }
}

fn default_watch_ms() -> u64 {
    1000
}

fn default_decision_cache_entries() -> usize {
    4096
}

fn default_dir() -> PathBuf {
    PathBuf::from("policies")
}
