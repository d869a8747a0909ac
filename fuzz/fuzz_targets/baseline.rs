//! The baseline policy folder (`policies/`), loaded once per fuzzing process.

use std::sync::OnceLock;

use invoiceguard_policy::{PolicyConfig, PolicyEngine};

pub fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
        let config = PolicyConfig {
            dir: dir.into(),
            watch_ms: 0,
            shadow_dir: None,
            decision_cache_entries: 4096,
            signed_by: Vec::new(),
        };
        match PolicyEngine::load(&config) {
            Ok(engine) => engine,
            Err(error) => panic!("the baseline policies do not load: {error}"),
        }
    })
}
