//! The configuration's credentials, reloaded without a restart: the API keys and mTLS accounts
//! (`[authn]`), the introspection client secret and the admin token (read again from their
//! files). On SIGHUP, and within a second of the configuration file or one of those files
//! changing, the whole file is read and checked again as `check` does; only if it has no problem
//! are the credentials swapped, all at once. A refused reload keeps the credentials in force.
//! Every reload, done or refused, is an audit event (`category: "administration"`, action
//! `config:credentials_reloaded` or `config:reload_refused`). Other changes to the file (the
//! listener, the upstream, the IdP…) need a restart; the reload says so in its event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use invoiceguard_audit::AuditEvent;

use crate::admin_token::read_token;
use crate::config::Config;
use crate::gateway::Gateway;

/// How often the files are looked at for a change.
const WATCH: Duration = Duration::from_secs(1);

/// The files whose change triggers a reload: the configuration, and the credential files it
/// names.
fn watched(config_file: &Path, config: Option<&Config>) -> Vec<PathBuf> {
    let mut files = vec![config_file.to_owned()];
    if let Some(config) = config {
        files.extend(config.admin.token_file.clone());
        files.extend(
            config
                .authn
                .introspection
                .as_ref()
                .map(|i| i.client_secret_file.clone()),
        );
    }
    files
}

/// What the files look like now (modification time and length of each), to notice a change.
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|file| {
            let metadata = std::fs::metadata(file).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
}

impl Gateway {
    /// Reads the configuration file again and, if it has no problem, puts its credentials in
    /// force; records what happened either way. Returns the configuration when it loaded.
    pub(crate) fn reload_credentials(&self, config_file: &Path) -> Option<Config> {
        let loaded = Config::load(config_file).map_err(|error| error.to_string());
        let applied = loaded
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|config| self.apply_credentials(config));
        let (action, severity, effect, detail) = match applied {
            Ok(detail) => {
                tracing::info!(%detail, "credentials reloaded");
                ("config:credentials_reloaded", "high", "allow", detail)
            }
            Err(problems) => {
                tracing::error!(%problems, "configuration reload refused; the credentials in force stay");
                ("config:reload_refused", "error", "deny", problems)
            }
        };
        let mut event = AuditEvent::system(action, severity, detail);
        event.category = "administration";
        event.decision.effect = effect;
        if let Err(error) = self.audit().record(event) {
            tracing::error!(%error, "audit event of a credentials reload not written");
        }
        loaded.ok()
    }

    fn apply_credentials(&self, config: &Config) -> Result<String, String> {
        let token = read_token(config.admin.token_file.as_deref())?;
        let changed = self.authn().reload_credentials(&config.authn)?;
        let token_changed = self.admin_token().replace(token);
        Ok(format!(
            "API-key accounts {} (were {}), accepted API-key hashes {} (were {}), mTLS accounts {} (were {}), introspection secret {}, admin token {}; other settings need a restart",
            changed.api_keys.0,
            changed.api_keys.1,
            changed.api_key_hashes.0,
            changed.api_key_hashes.1,
            changed.mtls_accounts.0,
            changed.mtls_accounts.1,
            if changed.introspection_secret_changed {
                "changed"
            } else {
                "unchanged"
            },
            if token_changed {
                "changed"
            } else {
                "unchanged"
            },
        ))
    }
}

/// Reloads the credentials on SIGHUP and when a watched file changes, for as long as the gateway
/// runs.
pub(crate) fn spawn_watch(gateway: &Arc<Gateway>, config_file: PathBuf) {
    let weak = Arc::downgrade(gateway);
    tokio::spawn(async move {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut files = watched(&config_file, Config::load(&config_file).ok().as_ref());
        let mut seen = fingerprint(&files);
        loop {
            let signalled = match hangup.as_mut() {
                Some(hangup) => tokio::select! {
                    _ = hangup.recv() => true,
                    () = tokio::time::sleep(WATCH) => false,
                },
                None => {
                    tokio::time::sleep(WATCH).await;
                    false
                }
            };
            let now = fingerprint(&files);
            if !signalled && now == seen {
                continue;
            }
            let Some(gateway) = weak.upgrade() else {
                return;
            };
            let loaded = gateway.reload_credentials(&config_file);
            files = watched(&config_file, loaded.as_ref());
            seen = fingerprint(&files);
        }
    });
}
