//! Tests of `config.rs`.

use super::*;

fn write(name: &str, text: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("invoiceguard-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let path = dir.join("invoiceguard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const MINIMAL: &str = "[upstream]\nurl = \"http://127.0.0.1:9500\"\n\n[authn]\nissuer = \"http://127.0.0.1:9400\"\naudience = [\"urn:api\"]\n";

#[test]
fn minimal_config_takes_safe_defaults_and_resolves_paths() {
    let path = write("minimal", MINIMAL);
    let config = Config::load(&path).unwrap();
    assert_eq!(config.listen.address.to_string(), "127.0.0.1:8080");
    assert!(config.listen.tls.is_none());
    assert!(!config.upstream.forward_authorization);
    assert_eq!(config.policy.dir, path.parent().unwrap().join("policies"));
    assert_eq!(config.audit.spool, path.parent().unwrap().join("audit"));
}

#[test]
fn every_relative_file_is_taken_from_the_config_folder() {
    let path = write(
        "relative",
        &format!(
            "{MINIMAL}[audit]\nhmac_key_file = \"hmac.key\"\n[[audit.sinks]]\nname = \"siem\"\nsyslog = \"c:6514\"\ntls = {{ ca_file = \"ca.pem\" }}\n[[audit.sinks]]\nname = \"archive\"\nfile = \"archive/audit.log\"\n[[audit.sinks]]\nname = \"hec\"\nhttp = \"https://hec:8088/services/collector/raw\"\nauth_header_file = \"hec.secret\"\n"
        ),
    );
    let folder = path.parent().unwrap();
    std::fs::write(folder.join("hmac.key"), "a-secret-of-at-least-16-bytes").unwrap();
    std::fs::write(folder.join("ca.pem"), "not read by validate").unwrap();
    std::fs::write(folder.join("hec.secret"), "Splunk 1234").unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.audit.hmac_key_file.as_deref(),
        Some(folder.join("hmac.key").as_path())
    );
    let ca = config.audit.sinks[0]
        .tls
        .as_ref()
        .and_then(|t| t.ca_file.clone());
    assert_eq!(ca, Some(folder.join("ca.pem")));
    assert_eq!(
        config.audit.sinks[1].file,
        Some(folder.join("archive/audit.log"))
    );
    assert_eq!(
        config.audit.sinks[2].auth_header_file,
        Some(folder.join("hec.secret"))
    );
}

#[test]
fn unknown_key_is_reported_with_its_line() {
    let path = write("unknown", &format!("{MINIMAL}upstrem_timeout = 3\n"));
    let error = Config::load(&path).unwrap_err().to_string();
    assert!(error.contains("invoiceguard.toml:7:1:"), "{error}");
    assert!(error.contains("upstrem_timeout"), "{error}");
}

#[test]
fn every_invalid_value_is_named_by_its_key() {
    let text = MINIMAL
        .replace("http://127.0.0.1:9500", "ftp://x")
        .replace("http://127.0.0.1:9400", "nope")
        + "[listen]\ntls = { cert_file = \"missing.pem\", key_file = \"missing.key\" }\n\
           worker_threads = 100000\n";
    let error = Config::load(&write("invalid", &text))
        .unwrap_err()
        .to_string();
    for key in [
        "upstream.url",
        "authn.issuer",
        "listen.tls.cert_file",
        "listen.tls.key_file",
        "listen.worker_threads",
    ] {
        assert!(error.contains(key), "{key} missing from {error}");
    }
}

#[test]
fn hardening_keys_are_checked() {
    let text = format!(
        "{MINIMAL}[listen]\nbody_deadline_ms = 30000\nhosts = [\"gw.example:8443\", \"\", \"[::1]\", \"ok.example\"]\n"
    )
    .replace(
        "url = \"http://127.0.0.1:9500\"",
        "url = \"http://127.0.0.1:9500\"\nremove_headers = [\"x-corp-*\", \"bad name\"]",
    );
    let error = Config::load(&write("hardening", &text))
        .unwrap_err()
        .to_string();
    for expected in [
        "listen.body_deadline_ms: must be less than `upstream.timeout_ms` (30000)",
        "listen.hosts[0]",
        "listen.hosts[1]",
        "upstream.remove_headers[1]",
    ] {
        assert!(error.contains(expected), "{expected} missing from {error}");
    }
    for fine in ["listen.hosts[2]", "listen.hosts[3]", "remove_headers[0]"] {
        assert!(!error.contains(fine), "{fine} refused: {error}");
    }
    let config = Config::load(&write("deadline", MINIMAL)).unwrap();
    assert_eq!(config.body_deadline_ms(), 20_000);
    let short = MINIMAL.replace(
        "url = \"http://127.0.0.1:9500\"",
        "url = \"http://127.0.0.1:9500\"\ntimeout_ms = 8000",
    );
    let config = Config::load(&write("short", &short)).unwrap();
    assert_eq!(
        config.body_deadline_ms(),
        6_000,
        "three quarters of the upstream's"
    );
}

#[test]
fn the_session_section_is_checked_key_by_key() {
    let session = |lines: &str| {
        format!(
            "{MINIMAL}\n[session]\nclient_id = \"invoiceguard-web\"\nclient_secret_file = \"web.secret\"\nscopes = [\"invoices:read\"]\n{lines}"
        )
    };
    // Good: the secret file taken from the configuration's folder, the defaults justified in
    // docs/sessions.md.
    let path = write(
        "session-good",
        &session("external_url = \"https://invoices.example.com\"\n"),
    );
    std::fs::write(path.parent().unwrap().join("web.secret"), "s3cret\n").unwrap();
    let config = Config::load(&path).unwrap();
    let loaded = config.session.unwrap();
    assert_eq!(
        loaded.client_secret_file,
        path.parent().unwrap().join("web.secret")
    );
    assert_eq!(
        (loaded.idle_timeout_s, loaded.absolute_timeout_s),
        (900, 28_800)
    );
    // Bad: each problem named by its key.
    let path = write(
        "session-bad",
        &session(
            "external_url = \"http://invoices.example.com/app\"\nissuer = \"https://other.example\"\nidle_timeout_s = 0\n",
        ),
    );
    let Err(ConfigError::Invalid { problems, .. }) = Config::load(&path) else {
        panic!("a bad [session] was accepted");
    };
    for key in [
        "session.client_secret_file",
        "session.external_url",
        "session.issuer",
        "session.idle_timeout_s",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{key} not reported: {problems:?}"
        );
    }
}

#[test]
fn the_security_event_receiver_is_checked_key_by_key() {
    let text = format!(
        "{MINIMAL}[ssf]\ntransmitter = \"idp.example\"\naudience = \" \"\ndelivery = \"carrier-pigeon\"\n\
         poll_interval_ms = 5\nmax_event_age_s = 10\nbearer_token_file = \"missing-token\"\n"
    );
    let error = Config::load(&write("ssf", &text)).unwrap_err().to_string();
    for key in [
        "ssf.transmitter",
        "ssf.audience",
        "ssf.delivery",
        "ssf.poll_interval_ms",
        "ssf.max_event_age_s",
        "ssf.bearer_token_file",
    ] {
        assert!(error.contains(key), "{key} missing from {error}");
    }
    let push =
        format!("{MINIMAL}[ssf]\ntransmitter = \"https://idp.example\"\naudience = \"urn:gw\"\n");
    let error = Config::load(&write("ssf-push", &push))
        .unwrap_err()
        .to_string();
    assert!(error.contains("ssf.push_url"), "{error}");
    let good = format!(
        "{MINIMAL}[ssf]\ntransmitter = \"https://idp.example\"\naudience = \"urn:gw\"\n\
         push_url = \"https://gw.example/.invoiceguard/ssf/events\"\n"
    );
    let config = Config::load(&write("ssf-good", &good)).unwrap();
    let ssf = config.ssf.unwrap();
    assert_eq!(ssf.delivery, "push");
    assert_eq!(ssf.max_event_age_s, 86_400);
}
