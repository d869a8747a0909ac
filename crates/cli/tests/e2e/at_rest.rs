//! The audit trail at rest, through the real binary: segments sealed (no plaintext of a known
//! event in the spool's files), the key rotated mid-run (both keys' segments read), delivered
//! segments archived with signed manifests, the spool deleted, the archives restored and
//! verified, the restored events shipped again to an HTTP collector (every event id arrives),
//! a changed and a removed archive named, the restore test report in the evidence pack, and a
//! spool others may read refused at start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use invoiceguard_testkit::HttpCollector;

use super::*;

/// Runs this build's binary: whether it succeeded, and what it printed.
fn cli(args: &[&std::ffi::OsStr]) -> (bool, String) {
    run(std::process::Command::new(BINARY).args(args))
}

fn os(text: &str) -> &std::ffi::OsStr {
    text.as_ref()
}

/// Writes a new sealing key with `audit keygen`.
fn keygen(path: &Path) {
    let out = std::process::Command::new(BINARY)
        .args(["audit", "keygen"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(path, out.stdout).unwrap();
}

/// The files of a folder, with their bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// The event ids of a trail, read with `audit query --format jsonl`.
fn event_ids(trail: &Path, keys: &[&Path]) -> BTreeSet<String> {
    let mut args: Vec<&std::ffi::OsStr> = vec![os("audit"), os("query"), trail.as_os_str()];
    for key in keys {
        args.push(os("--encryption-key"));
        args.push(key.as_os_str());
    }
    args.extend([os("--format"), os("jsonl")]);
    let (ok, out) = cli(&args);
    assert!(ok, "{out}");
    out.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_is_sealed_archived_restored_verified_and_shipped_again() {
    let keys = TempDir::new("at-rest").unwrap();
    let (old_key, new_key) = (keys.path().join("old.key"), keys.path().join("new.key"));
    keygen(&old_key);
    keygen(&new_key);
    let signing = keys.path().join("archive-signing.pem");
    let (ok, public) = cli(&[os("policy"), os("keygen"), os("--out"), signing.as_os_str()]);
    assert!(ok, "{public}");
    let public = public.lines().next().unwrap().trim().to_owned();
    let archive = keys.path().join("archive");
    let siem = HttpCollector::start().unwrap();
    let audit_lines =
        format!("segment_bytes = 4096\nmax_bytes = 4194304\nencryption_key_file = {old_key:?}\n");
    let extra = format!(
        "[audit.archive]\ndir = {archive:?}\nsigning_key_file = {signing:?}\nkeep_days = 30\n\n\
         [[audit.sinks]]\nname = \"siem\"\nhttp = \"{}\"\n",
        siem.url()
    );
    let idp = Idp::start().await.unwrap();
    let upstream = Upstream::start().unwrap();
    let text = format!("{}{extra}\n", sections(&idp.issuer, &upstream.url(), ""));
    let mut gateway =
        GatewayProcess::start_with_audit(Path::new(BINARY), &text, None, &audit_lines)
            .await
            .unwrap();
    let alice = idp
        .user_token("alice", TokenRequest::default())
        .await
        .unwrap();
    let url = format!("{}/invoices", gateway.url);
    let read = |count: usize| {
        let (url, alice) = (url.clone(), alice.clone());
        async move {
            for _ in 0..count {
                assert_eq!(get(&url, Some(&alice)).await.unwrap().status, 200);
            }
        }
    };
    read(30).await;

    // Sealed: nothing of a known event is in the spool's files.
    for (path, bytes) in files(&gateway.spool) {
        for needle in [&b"alice"[..], b"/invoices", b"invoice:list", b"127.0.0.1"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "`{}` holds {:?} in plaintext",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }

    // The key rotates mid-run: the old one only reads.
    gateway.terminate().unwrap();
    let config = std::fs::read_to_string(gateway.config_file()).unwrap();
    let rotated = config.replace(
        &format!("encryption_key_file = {old_key:?}"),
        &format!("encryption_key_file = {new_key:?}\ndecryption_key_files = [{old_key:?}]"),
    );
    assert_ne!(rotated, config);
    std::fs::write(gateway.config_file(), rotated).unwrap();
    gateway.kill_and_restart(Path::new(BINARY)).await.unwrap();
    read(30).await;
    // Every event delivered, and the delivered segments archived.
    let written = gateway.audit_events().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while siem.events().len() < written || files(&archive).len() < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered or archived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key_ids: BTreeSet<String> = files(&gateway.spool)
        .into_iter()
        .chain(
            files(&archive)
                .into_iter()
                .filter(|(p, _)| p.extension().is_some_and(|e| e == "zst"))
                .map(|(p, bytes)| (p, zstd_decode(&bytes))),
        )
        .filter_map(|(_, bytes)| {
            let first = bytes.split(|b| *b == b'\n').next()?;
            serde_json::from_slice::<Value>(first).ok()?["key_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(key_ids.len(), 2, "segments of both keys: {key_ids:?}");
    let spool = gateway.spool.clone();
    let key_args = [
        os("--encryption-key"),
        old_key.as_os_str(),
        os("--encryption-key"),
        new_key.as_os_str(),
    ];
    let mut verify: Vec<&std::ffi::OsStr> = vec![os("audit"), os("verify"), spool.as_os_str()];
    verify.extend(key_args);
    let (ok, out) = cli(&verify);
    assert!(ok, "the sealed spool of both keys verifies: {out}");
    let (ok, out) = cli(&[os("audit"), os("verify"), spool.as_os_str()]);
    assert!(
        !ok && out.contains("is not given"),
        "without its keys: {out}"
    );
    gateway.terminate().unwrap();
    // A gateway whose configuration lost the keys does not start over from seq 1: it refuses.
    let keyless = keys.path().join("keyless.toml");
    let text: String = std::fs::read_to_string(gateway.config_file())
        .unwrap()
        .lines()
        .filter(|line| {
            !line.contains("encryption_key_file") && !line.contains("decryption_key_files")
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&keyless, text).unwrap();
    let out = std::process::Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&keyless)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("is not given"),
        "{said}"
    );

    // The archives verify: signatures, hashes, the chain across them.
    let mut archive_verify: Vec<&std::ffi::OsStr> = vec![
        os("audit"),
        os("archive"),
        os("verify"),
        archive.as_os_str(),
        os("--trusted-key"),
        os(&public),
    ];
    archive_verify.extend(key_args);
    let (ok, out) = cli(&archive_verify);
    assert!(ok && out.contains("ok: "), "{out}");

    // The spool is lost; the archives are restored and verified, with a report.
    std::fs::remove_dir_all(&spool).unwrap();
    let restored = keys.path().join("restored");
    let mut restore: Vec<&std::ffi::OsStr> = vec![
        os("audit"),
        os("restore"),
        os("--from"),
        archive.as_os_str(),
        os("--to"),
        restored.as_os_str(),
        os("--trusted-key"),
        os(&public),
    ];
    restore.extend(key_args);
    let (ok, out) = cli(&restore);
    assert!(ok, "{out}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(restored.join("restore-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["archives_verified"], true, "{report}");
    assert_eq!(report["restored_verified"], true, "{report}");
    let mut verify: Vec<&std::ffi::OsStr> = vec![
        os("audit"),
        os("verify"),
        restored.as_os_str(),
        os("--continues"),
    ];
    verify.extend(key_args);
    let (ok, out) = cli(&verify);
    assert!(ok, "the restored trail verifies: {out}");
    let restored_ids = event_ids(&restored, &[&old_key, &new_key]);
    assert_eq!(
        restored_ids.len() as u64,
        report["events"].as_u64().unwrap()
    );

    // The SIEM lost its data: the restored events are shipped again, with their own ids.
    let lost = HttpCollector::start().unwrap();
    let ship_config = keys.path().join("ship.toml");
    std::fs::write(
        &ship_config,
        std::fs::read_to_string(gateway.config_file())
            .unwrap()
            .replace(&siem.url(), &lost.url()),
    )
    .unwrap();
    let (ok, out) = cli(&[
        os("audit"),
        os("ship"),
        os("--config"),
        ship_config.as_os_str(),
        os("--from"),
        restored.as_os_str(),
        os("--sink"),
        os("siem"),
    ]);
    assert!(ok, "{out}");
    let arrived: BTreeSet<String> = lost
        .events()
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(arrived, restored_ids, "every restored event id arrives");
    let first_seen: BTreeSet<String> = siem
        .events()
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        arrived.is_subset(&first_seen),
        "the same ids the SIEM first had"
    );

    // The restore test report is the evidence pack's.
    let pack = keys.path().join("pack");
    let (ok, out) = cli(&[
        os("evidence"),
        os("--config"),
        gateway.config_file().as_os_str(),
        os("--trail"),
        restored.as_os_str(),
        os("--restore-report"),
        restored.join("restore-report.json").as_os_str(),
        os("--out"),
        pack.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let evidence: Value =
        serde_json::from_slice(&std::fs::read(pack.join("evidence.json")).unwrap()).unwrap();
    let backup = evidence["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "backup")
        .unwrap();
    let rendered = backup.to_string();
    assert!(
        rendered.contains("restored trail verified") && rendered.contains("true"),
        "{rendered}"
    );
    assert!(
        backup["findings"][0]
            .as_str()
            .unwrap()
            .contains("archives and restored trail verified"),
        "{backup}"
    );

    // A changed archive file, and a removed archive, are each named.
    let mut zst: Vec<PathBuf> = files(&archive)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.extension().is_some_and(|e| e == "zst"))
        .collect();
    zst.sort();
    let mut bytes = std::fs::read(&zst[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&zst[0], bytes).unwrap();
    let removed = zst[1].clone();
    let stem = removed
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".jsonl.zst")
        .to_owned();
    std::fs::remove_file(&removed).unwrap();
    std::fs::remove_file(archive.join(format!("{stem}.manifest.json"))).unwrap();
    let (first, last) = stem.split_once('-').unwrap();
    let (ok, out) = cli(&archive_verify);
    assert!(!ok, "{out}");
    let changed = zst[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(out.contains(&changed) && out.contains("changed"), "{out}");
    assert!(
        out.contains(&format!(
            "seq {} to {} missing",
            first.parse::<u64>().unwrap(),
            last.parse::<u64>().unwrap()
        )),
        "{out}"
    );

    // A spool others may read: the gateway refuses to start, and says why.
    std::fs::create_dir_all(&spool).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = std::process::Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(gateway.config_file())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("mode 755") && said.contains("chmod 700"),
        "{said}"
    );
}

/// A zstd frame decoded (the test reads an archive's segment header).
fn zstd_decode(bytes: &[u8]) -> Vec<u8> {
    zstd::decode_all(bytes).unwrap()
}
