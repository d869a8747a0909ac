//! The running policy set, and its replacement without downtime: on SIGHUP, or when a file of the
//! policy folder changes, the whole folder is loaded and checked again; a set with any problem is
//! refused (logged and counted) and the last good set keeps serving.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use invoiceguard_policy::{LoadError, PolicyConfig, PolicyEngine};

/// The running policy set.
pub(crate) struct Policies {
    config: PolicyConfig,
    current: RwLock<Arc<PolicyEngine>>,
    /// The candidate set of shadow mode, when one is configured and loads.
    shadow: RwLock<Option<Arc<PolicyEngine>>>,
    fingerprint: AtomicU64,
    /// Reloads refused because the new set had problems.
    pub(crate) refused: AtomicU64,
}

impl Policies {
    /// Loads the folder; the gateway does not start without a good set.
    pub(crate) fn load(config: &PolicyConfig) -> Result<Self, LoadError> {
        let fingerprint = fingerprint(config);
        let engine = PolicyEngine::load(config)?;
        log_loaded(&engine, "policies loaded");
        Ok(Self {
            shadow: RwLock::new(load_shadow(config)),
            config: config.clone(),
            current: RwLock::new(Arc::new(engine)),
            fingerprint: AtomicU64::new(fingerprint),
            refused: AtomicU64::new(0),
        })
    }

    /// The set requests are decided by now; a request keeps the one it started with.
    pub(crate) fn current(&self) -> Arc<PolicyEngine> {
        self.current
            .read()
            .map_or_else(|p| p.into_inner().clone(), |c| c.clone())
    }

    /// The shadow set, if any.
    pub(crate) fn shadow(&self) -> Option<Arc<PolicyEngine>> {
        self.shadow
            .read()
            .map_or_else(|p| p.into_inner().clone(), |s| s.clone())
    }

    /// Loads the folder again and swaps it in when it has no problem. Returns whether it did.
    pub(crate) fn reload(&self) -> bool {
        self.fingerprint
            .store(fingerprint(&self.config), Ordering::SeqCst);
        if self.config.shadow_dir.is_some() {
            let shadow = load_shadow(&self.config);
            match self.shadow.write() {
                Ok(mut current) => *current = shadow,
                Err(poisoned) => *poisoned.into_inner() = shadow,
            }
        }
        match PolicyEngine::load(&self.config) {
            Ok(engine) => {
                log_loaded(&engine, "policies reloaded");
                let engine = Arc::new(engine);
                match self.current.write() {
                    Ok(mut current) => *current = engine,
                    Err(poisoned) => *poisoned.into_inner() = engine,
                }
                true
            }
            Err(LoadError(problems)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                for problem in &problems {
                    tracing::error!(%problem, "policy reload refused");
                }
                tracing::error!(
                    problems = problems.len(),
                    version = self.current().version(),
                    "the new policy set has problems; the last good set keeps serving"
                );
                false
            }
        }
    }

    /// Reloads on SIGHUP, and every `watch_ms` when a file of the folder changed. Ends when the
    /// gateway is dropped.
    pub(crate) fn spawn_watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut hangup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGHUP; policies reload on file changes only");
                    None
                }
            };
            let interval = weak.upgrade().map_or(0, |me| me.config.watch_ms);
            loop {
                let poll = async {
                    if interval == 0 {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(Duration::from_millis(interval)).await;
                };
                let signalled = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let by_signal = tokio::select! {
                    _ = signalled => true,
                    () = poll => false,
                };
                let Some(me) = weak.upgrade() else { return };
                let changed = fingerprint(&me.config) != me.fingerprint.load(Ordering::SeqCst);
                if by_signal || changed {
                    let policies = me.clone();
                    // Loading reads files and validates policies: off the request threads.
                    let _ = tokio::task::spawn_blocking(move || policies.reload()).await;
                }
            }
        });
    }
}

/// The shadow folder's set; one with problems is logged and skipped (it never decides anything).
fn load_shadow(config: &PolicyConfig) -> Option<Arc<PolicyEngine>> {
    let dir = config.shadow_dir.clone()?;
    match PolicyEngine::load(&PolicyConfig {
        dir: dir.clone(),
        ..config.clone()
    }) {
        Ok(engine) => {
            log_loaded(&engine, "shadow policies loaded");
            Some(Arc::new(engine))
        }
        Err(LoadError(problems)) => {
            for problem in &problems {
                tracing::warn!(%problem, "shadow policies not loaded");
            }
            None
        }
    }
}

fn log_loaded(engine: &PolicyEngine, message: &'static str) {
    tracing::info!(
        version = engine.version(),
        policies = engine.policy_count(),
        routes = engine.routes().routes().len(),
        "{message}"
    );
}

/// Names, sizes and modification times of the folders' files: a cheap "has anything changed".
fn fingerprint(config: &PolicyConfig) -> u64 {
    let mut hasher = DefaultHasher::new();
    let mut entries: Vec<_> = std::iter::once(&config.dir)
        .chain(config.shadow_dir.as_ref())
        .flat_map(|dir| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
        })
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        entry.path().hash(&mut hasher);
        if let Ok(meta) = entry.metadata() {
            meta.len().hash(&mut hasher);
            if let Ok(modified) = meta.modified() {
                modified.hash(&mut hasher);
            }
        }
    }
    hasher.finish()
}
