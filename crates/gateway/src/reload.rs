//! The running policy set, and its replacement without downtime: on SIGHUP, or when a file of the
//! policy folder changes, the whole folder is loaded and checked again; a set with any problem is
//! refused (logged and counted) and the last good set keeps serving. A folder with problems at
//! start leaves the gateway without a set: it refuses every request (503) and reports unready
//! until a good set loads. With `[policy] signed_by`, a set must also carry a valid signature.
//! Every load and reload, applied or refused, is an audit event (category `administration`,
//! actions `policy:loaded`, `policy:reloaded`, `policy:load_refused`, `policy:reload_refused`)
//! naming the versions and what changed: files, and policies added, removed or changed by `@id`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use invoiceguard_audit::{AuditEvent, AuditLog};
use invoiceguard_policy::{LoadError, PolicyConfig, PolicyEngine};
use invoiceguard_telemetry::metrics;

/// The running policy set.
pub(crate) struct Policies {
    config: PolicyConfig,
    current: RwLock<Option<Arc<PolicyEngine>>>,
    /// The candidate set of shadow mode, when one is configured and loads.
    shadow: RwLock<Option<Arc<PolicyEngine>>>,
    fingerprint: AtomicU64,
    /// Reloads refused because the new set had problems.
    pub(crate) refused: AtomicU64,
    /// Where loads and reloads are recorded.
    audit: Arc<AuditLog>,
}

/// Whether a set is the one loaded at start or a later reload.
#[derive(Clone, Copy)]
enum Load {
    Initial,
    Reload,
}

impl Policies {
    /// Loads the folder. With problems, they are logged and the gateway runs without a set
    /// (refusing every request) until a reload succeeds.
    pub(crate) fn load(config: &PolicyConfig, audit: Arc<AuditLog>) -> Self {
        let policies = Self {
            shadow: RwLock::new(load_shadow(config)),
            config: config.clone(),
            current: RwLock::new(None),
            fingerprint: AtomicU64::new(fingerprint(config)),
            refused: AtomicU64::new(0),
            audit,
        };
        match PolicyEngine::load(config) {
            Ok(engine) => {
                let detail = format!(
                    "version {}: {} policies, {} routes{}",
                    engine.version(),
                    engine.policy_count(),
                    engine.routes().routes().len(),
                    signed(&engine)
                );
                policies.record("policy:loaded", true, engine.version(), detail);
                policies.install(engine, Load::Initial);
            }
            Err(LoadError(problems)) => {
                policies.refuse(&problems);
                policies.record("policy:load_refused", false, "none", refusal(&problems));
                tracing::error!(
                    dir = %config.dir.display(),
                    "no policy set could be loaded: every request is refused until the folder is fixed"
                );
            }
        }
        policies
    }

    /// The set requests are decided by now (none when no good set ever loaded); a request keeps
    /// the one it started with.
    pub(crate) fn current(&self) -> Option<Arc<PolicyEngine>> {
        self.current
            .read()
            .map_or_else(|p| p.into_inner().clone(), |c| c.clone())
    }

    /// The running set's version, `none` without one.
    pub(crate) fn version(&self) -> String {
        self.current()
            .map_or_else(|| "none".to_owned(), |p| p.version().to_owned())
    }

    /// Puts a checked set in force. `policy_reloads_total` counts the set loaded at start as
    /// `initial`, later ones as `loaded`.
    fn install(&self, engine: PolicyEngine, load: Load) {
        let (message, result) = match load {
            Load::Initial => ("policies loaded", "initial"),
            Load::Reload => ("policies reloaded", "loaded"),
        };
        log_loaded(&engine, message);
        metrics().set_policy_version(engine.version());
        metrics().policy_reloads.with_label_values(&[result]).inc();
        let engine = Some(Arc::new(engine));
        match self.current.write() {
            Ok(mut current) => *current = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }

    fn refuse(&self, problems: &[invoiceguard_policy::Problem]) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics()
            .policy_reloads
            .with_label_values(&["refused"])
            .inc();
        for problem in problems {
            tracing::error!(%problem, "policy set refused");
        }
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
                let (old_version, changes) = match self.current() {
                    Some(old) => (
                        old.version().to_owned(),
                        engine.changes_from(&old).to_string(),
                    ),
                    None => ("none".to_owned(), "the first good set".to_owned()),
                };
                let detail = format!(
                    "version {old_version} -> {}: {changes}{}",
                    engine.version(),
                    signed(&engine)
                );
                self.record("policy:reloaded", true, engine.version(), detail);
                self.install(engine, Load::Reload);
                true
            }
            Err(LoadError(problems)) => {
                self.refuse(&problems);
                let version = self.version();
                let detail = format!("version {version} stays in force; {}", refusal(&problems));
                self.record("policy:reload_refused", false, &version, detail);
                tracing::error!(
                    problems = problems.len(),
                    version = self.version(),
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

impl Policies {
    /// Records a load or reload in the audit trail.
    fn record(&self, action: &str, applied: bool, version: &str, detail: String) {
        let mut event = AuditEvent::system(action, "high", detail);
        event.category = "administration";
        event.decision.effect = if applied { "allow" } else { "deny" };
        version.clone_into(&mut event.decision.policy_version);
        if let Err(error) = self.audit.record(event) {
            tracing::error!(%error, action, "a policy load could not be recorded");
        }
    }
}

/// `, signed by KEY` for a signed set.
fn signed(engine: &PolicyEngine) -> String {
    engine
        .signer()
        .map(|key| format!(", signed by {key}"))
        .unwrap_or_default()
}

/// The problems of a refused set, the first few in full.
fn refusal(problems: &[invoiceguard_policy::Problem]) -> String {
    let shown: Vec<String> = problems.iter().take(5).map(ToString::to_string).collect();
    format!(
        "{} problem(s): {}{}",
        problems.len(),
        shown.join("; "),
        if problems.len() > shown.len() {
            "; …"
        } else {
            ""
        }
    )
}

/// The shadow folder's set; one with problems is logged and skipped (it never decides anything,
/// so it need not be signed: a candidate is shadowed before it is approved).
fn load_shadow(config: &PolicyConfig) -> Option<Arc<PolicyEngine>> {
    let dir = config.shadow_dir.clone()?;
    match PolicyEngine::load(&PolicyConfig {
        dir: dir.clone(),
        signed_by: Vec::new(),
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
