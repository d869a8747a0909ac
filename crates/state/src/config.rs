//! The `[state]` section of the configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where facts that outlive a request are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `memory`: in this process (one replica, nothing to install); `redis`: shared by every
    /// replica.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// With `redis`: the server, `redis://host:port/db` or `rediss://…` for TLS. A password or
    /// user in the URL is refused: they come from `username` and `password_file`.
    pub url: Option<String>,
    /// With `redis`: the ACL user.
    pub username: Option<String>,
    /// With `redis`: a file holding the password.
    pub password_file: Option<PathBuf>,
    /// With `redis`: the prefix of every key, so several deployments can share a server.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Timeout of one call to the store, in milliseconds: a store that does not answer in time
    /// counts as unavailable.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long the creator of an invoice is remembered, in days.
    #[serde(default = "default_retention_days")]
    pub ownership_retention_days: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            url: None,
            username: None,
            password_file: None,
            key_prefix: default_prefix(),
            timeout_ms: default_timeout_ms(),
            ownership_retention_days: default_retention_days(),
        }
    }
}

fn default_backend() -> String {
    "memory".to_owned()
}

fn default_prefix() -> String {
    "invoiceguard:".to_owned()
}

fn default_timeout_ms() -> u64 {
    500
}

fn default_retention_days() -> u64 {
    400
}

impl StateConfig {
    /// Makes relative file paths relative to `base` (the configuration file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(file) = &mut self.password_file
            && file.is_relative()
        {
            *file = base.join(&*file);
        }
    }

    /// Checks the section, naming each problem with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.backend.as_str() {
            "memory" => {}
            "redis" => match &self.url {
                None => problems.push(
                    "state.url: the redis backend needs a `redis://` or `rediss://` URL".to_owned(),
                ),
                Some(url) => match redis::parse_redis_url(url) {
                    Some(parsed) if matches!(parsed.scheme(), "redis" | "rediss") => {
                        if parsed.password().is_some() {
                            problems.push("state.url: put the password in `state.password_file`, not in the URL".to_owned());
                        }
                    }
                    _ => problems.push(format!(
                        "state.url: `{url}` is not a `redis://` or `rediss://` URL"
                    )),
                },
            },
            other => problems.push(format!(
                "state.backend: `{other}` is not a backend (`memory` or `redis`)"
            )),
        }
        if let Some(file) = &self.password_file
            && !file.is_file()
        {
            problems.push(format!(
                "state.password_file: `{}` is not a readable file",
                file.display()
            ));
        }
        if self.timeout_ms == 0 {
            problems.push("state.timeout_ms: must be at least 1".to_owned());
        }
        if self.ownership_retention_days == 0 {
            problems.push("state.ownership_retention_days: must be at least 1".to_owned());
        }
        problems
    }
}
