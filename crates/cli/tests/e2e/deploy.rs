//! What `deploy/` ships is checked, not just written: the Kubernetes manifests against the API
//! schemas, the configurations they embed against the gateway's own configuration type, the
//! systemd unit with `systemd-analyze verify`, and the rsyslog example by receiving a gateway's
//! audit stream over TLS with it.

use super::*;

fn deploy(path: &str) -> std::path::PathBuf {
    invoiceguard_testkit::repo_root().join("deploy").join(path)
}

/// The `invoiceguard.toml: |` block of a manifest's ConfigMap.
fn embedded_config(manifest: &str) -> String {
    let text = std::fs::read_to_string(deploy(manifest)).unwrap();
    let start = text.find("invoiceguard.toml: |\n").unwrap() + "invoiceguard.toml: |\n".len();
    text[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect()
}

fn kubernetes_validate(files: &[std::path::PathBuf]) -> std::process::Output {
    let tool = invoiceguard_testkit::repo_root().join("target/tools/bin/kubernetes-validate");
    std::process::Command::new(&tool)
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .args(files)
        .output()
        .map_err(|e| format!("{} (tests/deps.sh installs it): {e}", tool.display()))
        .unwrap()
}

#[test]
fn the_kubernetes_manifests_validate_and_embed_valid_configurations() {
    let manifests = [
        "kubernetes/sidecar/invoicing-api.yaml",
        "kubernetes/tier/invoiceguard.yaml",
    ];
    let files: Vec<_> = manifests.iter().map(|m| deploy(m)).collect();
    let out = kubernetes_validate(&files);
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    for kind in [
        "deployment/invoicing-api",
        "service/invoicing-api",
        "deployment/invoiceguard",
        "service/invoiceguard",
        "horizontalpodautoscaler/invoiceguard",
        "poddisruptionbudget/invoiceguard",
        "networkpolicy/invoiceguard",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}")),
            "{kind}: {report}"
        );
    }
    // The validator does reject a broken manifest.
    let dir = TempDir::new("manifests").unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&files[1]).unwrap();
    std::fs::write(&broken, text.replacen("replicas: 3", "replicas: three", 1)).unwrap();
    assert!(!kubernetes_validate(&[broken]).status.success());
    // The configurations they carry are invoiceguard configurations: every key known, every
    // value of its type.
    for manifest in manifests {
        let config = embedded_config(manifest);
        if let Err(error) = toml::from_str::<invoiceguard_gateway::Config>(&config) {
            panic!("{manifest}: {error}\n{config}");
        }
    }
    let example = std::fs::read_to_string(deploy("invoiceguard.example.toml")).unwrap();
    toml::from_str::<invoiceguard_gateway::Config>(&example).unwrap();
    // And so is the README's minimal configuration.
    let readme =
        std::fs::read_to_string(invoiceguard_testkit::repo_root().join("README.md")).unwrap();
    let block = readme
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    toml::from_str::<invoiceguard_gateway::Config>(block).unwrap();
    toml::from_str::<toml::Table>(
        &std::fs::read_to_string(deploy("collectors/vector.toml")).unwrap(),
    )
    .unwrap();
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let dir = TempDir::new("systemd").unwrap();
    let unit = dir.path().join("invoiceguard.service");
    let text = std::fs::read_to_string(deploy("systemd/invoiceguard.service")).unwrap();
    // Verified against the binary this test suite built, where the unit expects it installed.
    std::fs::write(&unit, text.replace("/usr/local/bin/invoiceguard", BINARY)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // systemd-analyze exits 0 on settings it ignores: any message is a problem.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("invoiceguard.service"))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let broken = dir.path().join("broken.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&unit)
            .unwrap()
            .replace("ProtectSystem=strict", "ProtectSystem=sometimes"),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken.service"),
        "a bad setting is reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rsyslog_example_receives_the_audit_stream_over_tls() {
    let dir = TempDir::new("rsyslog-example").unwrap();
    let (ca, cert, key) = invoiceguard_testkit::certificates(dir.path()).unwrap();
    let port = free_port().unwrap();
    let out = dir.path().join("log");
    let config = std::fs::read_to_string(deploy("collectors/rsyslog.conf"))
        .unwrap()
        .replace("/var/spool/rsyslog", &dir.path().display().to_string())
        .replace(
            "/etc/rsyslog.d/invoiceguard/ca.pem",
            &ca.display().to_string(),
        )
        .replace(
            "/etc/rsyslog.d/invoiceguard/collector.pem",
            &cert.display().to_string(),
        )
        .replace(
            "/etc/rsyslog.d/invoiceguard/collector.key",
            &key.display().to_string(),
        )
        .replace("port=\"6514\"", &format!("port=\"{port}\""))
        .replace("/var/log/invoiceguard", &out.display().to_string());
    let config_file = dir.path().join("rsyslog.conf");
    std::fs::write(&config_file, config).unwrap();
    let check = std::process::Command::new("rsyslogd")
        .args(["-N1", "-f"])
        .arg(&config_file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut rsyslogd = std::process::Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(&config_file)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sink = format!(
        "[[audit.sinks]]\nname = \"siem\"\nsyslog = \"127.0.0.1:{port}\"\ntls = {{ ca_file = {ca:?}, server_name = \"localhost\" }}\n"
    );
    let world = World::start_with(&sink, None, "").await;
    let alice = world.token("alice").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let reply = get(&world.url("/invoices/INV-1"), Some(&alice))
            .await
            .unwrap();
        ids.push(reply.header("x-request-id").to_owned());
    }
    let mut received = String::new();
    for _ in 0..100 {
        received = std::fs::read_dir(&out)
            .map(|entries| {
                entries
                    .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        if ids.iter().all(|id| received.contains(id.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = rsyslogd.kill();
    let _ = rsyslogd.wait();
    for id in &ids {
        assert!(
            received.contains(id.as_str()),
            "{id} not in the collector's file:\n{received}"
        );
    }
    for line in received.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert!(event["seq"].as_u64().is_some(), "{line}");
    }
}
