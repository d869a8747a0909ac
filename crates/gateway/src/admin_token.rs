//! The admin token (`admin.token_file`): read at start, replaced when the credentials are reloaded
//! (`credentials.rs`), checked by the admin listener (`admin.rs`).

use std::path::Path;
use std::sync::RwLock;

/// The admin token (from `admin.token_file`), as the admin listener checks it now.
#[derive(Default)]
pub(crate) struct AdminToken(RwLock<Option<String>>);

impl AdminToken {
    /// Reads the token file: `None` without one, or when it is empty (revocations disabled).
    pub(crate) fn load(file: Option<&Path>) -> Result<Self, String> {
        Ok(Self(RwLock::new(read_token(file)?)))
    }

    /// The token in force.
    pub(crate) fn current(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces it; whether it changed.
    pub(crate) fn replace(&self, token: Option<String>) -> bool {
        let mut current = self.0.write().unwrap_or_else(|p| p.into_inner());
        let changed = *current != token;
        *current = token;
        changed
    }
}

pub(crate) fn read_token(file: Option<&Path>) -> Result<Option<String>, String> {
    let Some(file) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("admin.token_file: cannot read `{}`: {e}", file.display()))?;
    Ok(Some(text.trim().to_owned()).filter(|token| !token.is_empty()))
}
