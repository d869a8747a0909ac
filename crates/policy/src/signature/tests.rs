//! Signing and verifying a copy of the baseline folder: what passes, and each way it is refused.

use std::path::{Path, PathBuf};

use super::*;

struct Folder(PathBuf);

impl Folder {
    /// A copy of the baseline policy folder.
    fn baseline(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("invoiceguard-sig-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        copy(&from, &dir);
        Self(dir)
    }

    fn key(&self, name: &str) -> (PathBuf, String) {
        let (pem, public) = generate_key().unwrap();
        let path = self.0.with_extension(format!("{name}.pem"));
        std::fs::write(&path, pem).unwrap();
        (path, public)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_signed_folder_verifies_with_its_key_only() {
    let folder = Folder::baseline("ok");
    let (key_file, public) = folder.key("signer");
    assert_eq!(sign(&folder.0, &key_file).unwrap(), public);
    assert_eq!(
        verify(&folder.0, std::slice::from_ref(&public)).unwrap(),
        public
    );
    assert_eq!(verify(&folder.0, &[]).unwrap(), public);
    let (_, other) = folder.key("other");
    let refused = verify(&folder.0, &[other]).unwrap_err();
    assert!(refused.contains("not in policy.signed_by"), "{refused}");
    assert!(check_keys(&[public]).is_empty());
    assert_eq!(check_keys(&["AAAA".to_owned()]).len(), 1);
}

#[test]
fn a_file_edited_added_or_removed_after_signing_is_named() {
    let folder = Folder::baseline("edited");
    let (key_file, public) = folder.key("signer");
    sign(&folder.0, &key_file).unwrap();
    let trusted = [public];
    let sod = folder.0.join("sod.cedar");
    let text = std::fs::read_to_string(&sod).unwrap();
    std::fs::write(&sod, text.replace("forbid", "permit")).unwrap();
    std::fs::write(folder.0.join("extra.cedar"), "").unwrap();
    std::fs::remove_file(folder.0.join("tests/roles.toml")).unwrap();
    let refused = verify(&folder.0, &trusted).unwrap_err();
    for change in [
        "`sod.cedar` changed",
        "`extra.cedar` added",
        "`tests/roles.toml` removed",
    ] {
        assert!(refused.contains(change), "{refused}");
    }
}

#[test]
fn an_altered_or_missing_signature_is_refused() {
    let folder = Folder::baseline("altered");
    let (key_file, public) = folder.key("signer");
    sign(&folder.0, &key_file).unwrap();
    let trusted = [public];
    let sig = folder.0.join(SIGNATURE_FILE);
    let text = std::fs::read_to_string(&sig).unwrap();
    // A file line changed to match an edited file: the signature no longer covers it.
    let first_file = text
        .lines()
        .find(|l| l.starts_with("file "))
        .unwrap()
        .to_owned();
    let forged = first_file.replacen("file ", "file 00", 1);
    std::fs::write(&sig, text.replace(&first_file, &forged)).unwrap();
    assert!(
        verify(&folder.0, &trusted)
            .unwrap_err()
            .contains("does not verify")
    );
    std::fs::remove_file(&sig).unwrap();
    assert!(
        verify(&folder.0, &trusted)
            .unwrap_err()
            .contains("no valid signature")
    );
    std::fs::write(&sig, "garbage").unwrap();
    assert!(verify(&folder.0, &trusted).is_err());
}

#[test]
fn a_signed_set_loads_and_its_changes_are_summarized() {
    use crate::{PolicyConfig, PolicyEngine};
    let folder = Folder::baseline("engine");
    let (key_file, public) = folder.key("signer");
    sign(&folder.0, &key_file).unwrap();
    let config = PolicyConfig {
        dir: folder.0.clone(),
        signed_by: vec![public],
        ..PolicyConfig::default()
    };
    let old = PolicyEngine::load(&config).unwrap();
    assert!(old.signer().is_some());
    // Approvals tightened, a policy added, and not signed again: refused.
    let limits = folder.0.join("limits.cedar");
    let text = std::fs::read_to_string(&limits).unwrap();
    std::fs::write(
        &limits,
        format!(
            "{}\n@id(\"limits.no-weekend-exports\")\nforbid (principal, action == Action::\"export:create\", resource) when {{ context.mfa == false }};\n",
            text.replace("approval_limit", "approval_limit - 1")
        ),
    )
    .unwrap();
    let refused = PolicyEngine::load(&config).err().unwrap();
    let problems: Vec<String> = refused.0.iter().map(ToString::to_string).collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("policy.sig") && p.contains("`limits.cedar` changed")),
        "{problems:?}"
    );
    sign(&folder.0, &key_file).unwrap();
    let new = PolicyEngine::load(&config).unwrap();
    let changes = new.changes_from(&old);
    assert_eq!(changes.files, ["limits.cedar"]);
    assert_eq!(changes.added, ["limits.no-weekend-exports"]);
    assert_eq!(changes.changed, ["limits.approval-limit"]);
    assert!(changes.removed.is_empty() && changes.routes_added.is_empty());
    assert_eq!(
        changes.to_string(),
        "files changed: limits.cedar; policies added: limits.no-weekend-exports; policies changed: limits.approval-limit"
    );
    assert_eq!(old.changes_from(&old).to_string(), "no change");
}

#[test]
fn a_configmap_mount_loads_and_verifies_and_hidden_entries_are_not_read() {
    use crate::{PolicyConfig, PolicyEngine};
    // Kubernetes mounts a ConfigMap as `..<timestamp>/` holding the files, `..data` linking to
    // it, and each file a link into `..data`.
    let folder = Folder::baseline("configmap");
    let mount = folder.0.with_extension("mount");
    let _ = std::fs::remove_dir_all(&mount);
    let stamped = mount.join("..2026_12_06_00_00_00.000000001");
    copy(&folder.0, &stamped);
    std::os::unix::fs::symlink("..2026_12_06_00_00_00.000000001", mount.join("..data")).unwrap();
    for entry in std::fs::read_dir(&stamped).unwrap() {
        let name = entry.unwrap().file_name();
        std::os::unix::fs::symlink(Path::new("..data").join(&name), mount.join(&name)).unwrap();
    }
    let (key_file, public) = folder.key("signer");
    let files = read_folder(&mount).unwrap();
    assert!(
        files.keys().all(|name| !name.starts_with('.')),
        "{:?}",
        files.keys()
    );
    assert!(files.contains_key("tests/sod.toml"));
    sign(&mount, &key_file).unwrap();
    let config = PolicyConfig {
        dir: mount.clone(),
        signed_by: vec![public],
        ..PolicyConfig::default()
    };
    let engine = PolicyEngine::load(&config).unwrap();
    let plain = PolicyEngine::load(&PolicyConfig {
        dir: folder.0.clone(),
        ..PolicyConfig::default()
    })
    .unwrap();
    assert_eq!(engine.version(), plain.version());
    let _ = std::fs::remove_dir_all(&mount);
}
