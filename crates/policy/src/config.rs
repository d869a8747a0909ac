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
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { dir: default_dir() }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("policies")
}
