//! The `[state]` section of the configuration.

use serde::Deserialize;

/// Where facts that outlive a request are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `memory`: in this process (one replica). The only backend so far.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// How long the creator of an invoice is remembered, in days.
    #[serde(default = "default_retention_days")]
    pub ownership_retention_days: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            ownership_retention_days: default_retention_days(),
        }
    }
}

fn default_backend() -> String {
    "memory".to_owned()
}

fn default_retention_days() -> u64 {
    400
}

impl StateConfig {
    /// Checks the section, naming each problem with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.backend != "memory" {
            problems.push(format!(
                "state.backend: `{}` is not a backend (`memory`)",
                self.backend
            ));
        }
        if self.ownership_retention_days == 0 {
            problems.push("state.ownership_retention_days: must be at least 1".to_owned());
        }
        problems
    }
}
