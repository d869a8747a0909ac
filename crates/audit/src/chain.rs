//! The hash chain: each event carries the hash of the line before it, so removing, inserting,
//! reordering or changing an event breaks the chain where it happened. Keyed with an HMAC secret,
//! only who holds the key can forge a consistent chain.

use aws_lc_rs::{digest, hmac};

/// The `prev_hash` of the first event ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hashes audit lines, plainly (SHA-256) or keyed (HMAC-SHA256).
#[derive(Clone)]
pub struct Chain {
    key: Option<hmac::Key>,
}

impl Chain {
    /// A plain SHA-256 chain.
    pub fn plain() -> Self {
        Self { key: None }
    }

    /// An HMAC-SHA256 chain keyed with `secret`.
    pub fn keyed(secret: &[u8]) -> Self {
        Self {
            key: Some(hmac::Key::new(hmac::HMAC_SHA256, secret)),
        }
    }

    /// The chain of a trail: keyed with the secret in `key_file` (`[audit] hmac_key_file`,
    /// surrounding whitespace ignored), or plain without one.
    pub fn from_key_file(key_file: Option<&std::path::Path>) -> Result<Self, String> {
        match key_file {
            Some(path) => std::fs::read(path)
                .map(|secret| Self::keyed(secret.trim_ascii()))
                .map_err(|error| format!("cannot read `{}`: {error}", path.display())),
            None => Ok(Self::plain()),
        }
    }

    /// The hex hash of one line, without its newline.
    pub fn hash(&self, line: &[u8]) -> String {
        let bytes: Vec<u8> = match &self.key {
            Some(key) => hmac::sign(key, line).as_ref().to_vec(),
            None => digest::digest(&digest::SHA256, line).as_ref().to_vec(),
        };
        hex::encode(bytes)
    }
}
