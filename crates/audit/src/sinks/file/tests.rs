//! Tests of `file.rs`.

use super::*;

#[test]
fn a_missing_folder_is_made_and_an_unwritable_one_reported() {
    let dir = std::env::temp_dir().join(format!("invoiceguard-sinkdir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("a/b/audit.log");
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(problem(&path), None, "a folder that can be made is fine");
    assert!(!dir.join("a").exists(), "check creates nothing");
    prepare(&path).unwrap();
    assert!(path.is_file());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("a/b"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(problem(&dir).unwrap().contains("is a folder"));
    // A file where a folder should be: no folder can be made there, whoever runs.
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let under_a_file = blocker.join("sub/audit.log");
    assert!(problem(&under_a_file).unwrap().contains("is not a folder"));
    assert!(
        prepare(&under_a_file)
            .unwrap_err()
            .contains("cannot create the folder")
    );
    // A read-only folder above (root writes anywhere: then only the case above applies).
    let locked = dir.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(locked.join("x"));
    if probe.is_err() {
        let why = problem(&locked.join("sub/audit.log")).unwrap();
        assert!(why.contains("cannot create"), "{why}");
        assert!(prepare(&locked.join("sub/audit.log")).is_err());
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn after_a_crash_the_events_already_in_the_file_are_not_appended_again() {
    let dir = std::env::temp_dir().join(format!("invoiceguard-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.log");
    let event = |seq: u64| Bytes::from(format!("{{\"seq\":{seq},\"event_id\":\"e{seq}\"}}"));
    let config: SinkConfig = toml::from_str(&format!("name = \"f\"\nfile = {path:?}")).unwrap();
    let mut sink = FileSink::new(&config, &path);
    sink.send(&[event(1), event(2), event(3)]).unwrap();
    // The process dies while writing event 4 (half a line on disk), before the cursor of
    // the last batch is saved: 2 to 5 come again.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"seq\":4,\"ev")
        .unwrap();
    let mut restarted = FileSink::new(&config, &path);
    restarted
        .send(&[event(2), event(3), event(4), event(5)])
        .unwrap();
    // An event equal to an old one later on is written: only the replayed run is skipped.
    restarted.send(&[event(1)]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let seqs: Vec<&str> = text.lines().collect();
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5, 1]
            .map(|s| String::from_utf8(event(s).to_vec()).unwrap())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn rotates_by_size_and_keeps_the_configured_number() {
    let dir = std::env::temp_dir().join(format!("invoiceguard-filesink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.log");
    let config: SinkConfig = toml::from_str(&format!(
        "name = \"f\"\nfile = {path:?}\nmax_file_bytes = 4096\nkeep_files = 2"
    ))
    .unwrap();
    let mut sink = FileSink::new(&config, &path);
    let line = Bytes::from(format!("{{\"seq\":1,\"pad\":\"{}\"}}", "x".repeat(1000)));
    for _ in 0..20 {
        sink.send(std::slice::from_ref(&line)).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
    for name in &names {
        let size = std::fs::metadata(dir.join(name)).unwrap().len();
        assert!(size <= 4096, "{name}: {size}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
