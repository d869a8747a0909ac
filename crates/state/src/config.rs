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
    /// With `redis`, one server: `redis://host:port/db`, or `rediss://…` for TLS. A password in
    /// the URL is refused: it comes from `password_file`. Exactly one of `url`, `sentinels` and
    /// `cluster_nodes` is set.
    pub url: Option<String>,
    /// With `redis` behind Sentinel: the sentinels' URLs (`redis://host:26379`).
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// With Sentinel: the name of the monitored master.
    pub sentinel_master: Option<String>,
    /// With Redis Cluster: some nodes' URLs; the others are discovered.
    #[serde(default)]
    pub cluster_nodes: Vec<String>,
    /// With `rediss://`: CA certificates (PEM) the server's certificate must chain to; the
    /// system's roots when absent.
    pub ca_file: Option<PathBuf>,
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
            sentinels: Vec::new(),
            sentinel_master: None,
            cluster_nodes: Vec::new(),
            ca_file: None,
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
        for file in [&mut self.password_file, &mut self.ca_file]
            .into_iter()
            .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
    }

    /// The Redis topology: one server, Sentinel, or Cluster.
    pub(crate) fn addresses(&self) -> Vec<&str> {
        self.url
            .iter()
            .chain(&self.sentinels)
            .chain(&self.cluster_nodes)
            .map(String::as_str)
            .collect()
    }

    /// Checks the section, naming each problem with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.backend.as_str() {
            "memory" => {}
            "redis" => {
                let kinds = [
                    self.url.is_some(),
                    !self.sentinels.is_empty(),
                    !self.cluster_nodes.is_empty(),
                ];
                if kinds.iter().filter(|set| **set).count() != 1 {
                    problems.push("state: the redis backend needs exactly one of `url`, `sentinels` or `cluster_nodes`".to_owned());
                }
                if !self.sentinels.is_empty() && self.sentinel_master.is_none() {
                    problems
                        .push("state.sentinel_master: Sentinel needs the master's name".to_owned());
                }
                for url in self.addresses() {
                    match redis::parse_redis_url(url) {
                        Some(parsed) if matches!(parsed.scheme(), "redis" | "rediss") => {
                            if parsed.password().is_some() {
                                problems.push("state: put the password in `state.password_file`, not in a URL".to_owned());
                            }
                        }
                        _ => problems.push(format!(
                            "state: `{url}` is not a `redis://` or `rediss://` URL"
                        )),
                    }
                }
            }
            other => problems.push(format!(
                "state.backend: `{other}` is not a backend (`memory` or `redis`)"
            )),
        }
        for (key, file) in [
            ("password_file", &self.password_file),
            ("ca_file", &self.ca_file),
        ] {
            if let Some(file) = file
                && let Err(error) = std::fs::read(file)
            {
                problems.push(format!(
                    "state.{key}: cannot read `{}`: {error}",
                    file.display()
                ));
            }
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
