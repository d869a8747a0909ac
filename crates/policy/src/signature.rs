//! Signed policy sets: `invoiceguard policy sign DIR --key KEY` writes `DIR/policy.sig`, an
//! Ed25519 signature over the folder's manifest (the SHA-256 of every file in it, by path); with
//! `[policy] signed_by = [public keys]`, a folder is loaded only when its signature is valid for
//! one of them and the files are exactly the ones signed. A file edited, added or removed after
//! signing is named.
//!
//! ```text
//! invoiceguard policy signature v1
//! key <base64 public key>
//! file <sha256 hex> <path>
//! ...
//! signature <base64 Ed25519 signature over the lines above, each ending in \n>
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The signature's file name in the policy folder (not itself signed).
pub const SIGNATURE_FILE: &str = "policy.sig";
const HEADER: &str = "invoiceguard policy signature v1";

/// Every file of the folder (subfolders too, `policy.sig` aside) by its path relative to the
/// folder (`/`-separated), with its SHA-256 in hex.
pub fn folder_digests(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    Ok(digests_of(&read_folder(dir)?))
}

/// The SHA-256 (hex) of each file read.
pub(crate) fn digests_of(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(name, bytes)| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
            (name.clone(), hex::encode(digest.as_ref()))
        })
        .collect()
}

/// How deep subfolders are followed (a symbolic link loop ends here).
const MAX_DEPTH: usize = 8;

/// Every file of the folder (subfolders too, `policy.sig` and hidden entries aside), read once,
/// by its relative path: the engine loads from these bytes, the very ones whose signature was
/// checked, so a file replaced between the check and the load cannot slip in. Symbolic links
/// are followed; hidden entries (`.git`, editors' files, the `..data` links of a Kubernetes
/// ConfigMap volume, whose files link into them) are not read. An error names the file.
pub(crate) fn read_folder(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let named = |path: &Path, error: std::io::Error| {
        std::io::Error::new(error.kind(), format!("`{}`: {error}", path.display()))
    };
    let mut files = BTreeMap::new();
    let mut pending = vec![(dir.to_path_buf(), 0)];
    while let Some((folder, depth)) = pending.pop() {
        for entry in std::fs::read_dir(&folder).map_err(|e| named(&folder, e))? {
            let entry = entry.map_err(|e| named(&folder, e))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let meta = std::fs::metadata(&path).map_err(|e| named(&path, e))?;
            if meta.is_dir() {
                if depth + 1 >= MAX_DEPTH {
                    return Err(named(
                        &path,
                        std::io::Error::other("folders nested too deep (a link loop?)"),
                    ));
                }
                pending.push((path, depth + 1));
                continue;
            }
            let Ok(relative) = path.strip_prefix(dir) else {
                continue;
            };
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if name == SIGNATURE_FILE {
                continue;
            }
            files.insert(name, std::fs::read(&path).map_err(|e| named(&path, e))?);
        }
    }
    Ok(files)
}

/// The lines a signature covers.
fn signed_text(key: &str, digests: &BTreeMap<String, String>) -> String {
    let mut text = format!("{HEADER}\nkey {key}\n");
    for (path, digest) in digests {
        text.push_str(&format!("file {digest} {path}\n"));
    }
    text
}

/// Reads a private key: PKCS#8 in PEM (`openssl genpkey -algorithm ed25519`, or
/// `invoiceguard policy keygen`).
fn read_key(key_file: &Path) -> Result<Ed25519KeyPair, String> {
    let text = std::fs::read_to_string(key_file)
        .map_err(|e| format!("cannot read `{}`: {e}", key_file.display()))?;
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = STANDARD
        .decode(body.trim())
        .map_err(|_| format!("`{}` is not a PEM private key", key_file.display()))?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| {
        format!(
            "`{}` is not an Ed25519 private key (PKCS#8)",
            key_file.display()
        )
    })
}

/// A new private key as PEM, and its public key as base64 (what `signed_by` lists).
pub fn generate_key() -> Result<(String, String), String> {
    let document = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .map_err(|_| "cannot generate a key".to_owned())?;
    let pair = Ed25519KeyPair::from_pkcs8(document.as_ref())
        .map_err(|_| "cannot read the generated key".to_owned())?;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(document.as_ref())
    );
    Ok((pem, STANDARD.encode(pair.public_key().as_ref())))
}

/// Signs the folder with the key in `key_file`: writes `policy.sig`; returns the public key.
pub fn sign(dir: &Path, key_file: &Path) -> Result<String, String> {
    let pair = read_key(key_file)?;
    let key = STANDARD.encode(pair.public_key().as_ref());
    let digests =
        folder_digests(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    let text = signed_text(&key, &digests);
    let signature = STANDARD.encode(pair.sign(text.as_bytes()).as_ref());
    std::fs::write(
        dir.join(SIGNATURE_FILE),
        format!("{text}signature {signature}\n"),
    )
    .map_err(|e| format!("cannot write `{}`: {e}", dir.join(SIGNATURE_FILE).display()))?;
    Ok(key)
}

/// Checks the folder's signature: by one of `trusted` (base64 Ed25519 public keys), or — with
/// none given — by the key the file names. Returns the signing key; a problem otherwise, naming
/// the files changed since signing.
pub fn verify(dir: &Path, trusted: &[String]) -> Result<String, String> {
    let files = read_folder(dir).map_err(|e| format!("cannot read the folder: {e}"))?;
    verify_files(dir, &files, trusted)
}

/// [`verify`] over files already read ([`read_folder`]).
pub(crate) fn verify_files(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    trusted: &[String],
) -> Result<String, String> {
    let path = dir.join(SIGNATURE_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("no valid signature: cannot read `{SIGNATURE_FILE}`: {e}"))?;
    let (signed, signature) = text
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .and_then(|(signed, last)| Some((format!("{signed}\n"), last.strip_prefix("signature ")?)))
        .ok_or_else(|| "the signature file has no `signature` line".to_owned())?;
    let mut lines = signed.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!(
            "`{SIGNATURE_FILE}` is not an invoiceguard policy signature"
        ));
    }
    let key = lines
        .next()
        .and_then(|l| l.strip_prefix("key "))
        .ok_or_else(|| "the signature file has no `key` line".to_owned())?
        .to_owned();
    if !trusted.is_empty() && !trusted.iter().any(|t| t.trim() == key) {
        return Err(format!(
            "signed by `{key}`, which is not in policy.signed_by"
        ));
    }
    let raw_key = STANDARD
        .decode(&key)
        .map_err(|_| format!("the signing key `{key}` is not base64"))?;
    let raw_signature = STANDARD
        .decode(signature.trim())
        .map_err(|_| "the signature is not base64".to_owned())?;
    UnparsedPublicKey::new(&ED25519, &raw_key)
        .verify(signed.as_bytes(), &raw_signature)
        .map_err(|_| {
            format!("the signature does not verify with `{key}` (the signature file was altered)")
        })?;
    let listed: BTreeMap<String, String> = lines
        .filter_map(|line| {
            let mut parts = line.strip_prefix("file ")?.splitn(2, ' ');
            let digest = parts.next()?.to_owned();
            Some((parts.next()?.to_owned(), digest))
        })
        .collect();
    let now = digests_of(files);
    let mut changes = Vec::new();
    for (file, digest) in &now {
        match listed.get(file) {
            None => changes.push(format!("`{file}` added")),
            Some(signed) if signed != digest => changes.push(format!("`{file}` changed")),
            Some(_) => {}
        }
    }
    changes.extend(
        listed
            .keys()
            .filter(|file| !now.contains_key(*file))
            .map(|file| format!("`{file}` removed")),
    );
    if !changes.is_empty() {
        return Err(format!(
            "the folder differs from what was signed: {}",
            changes.join(", ")
        ));
    }
    Ok(key)
}

/// Checks that each configured public key is base64 of 32 bytes.
pub fn check_keys(trusted: &[String]) -> Vec<String> {
    trusted
        .iter()
        .filter(|key| {
            STANDARD
                .decode(key.trim())
                .map_or(true, |raw| raw.len() != 32)
        })
        .map(|key| {
            format!("policy.signed_by: `{key}` is not a base64 Ed25519 public key (32 bytes)")
        })
        .collect()
}

#[cfg(test)]
mod tests;
