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

/// Who owns a file the deployment provides, and its mode.
struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

/// A deployment's file system, rebuilt in a temporary folder: every path its configuration
/// names under `/etc/invoiceguard`, `/var/lib/invoiceguard` and `/run/credentials/…` created
/// there (certificates, keys, secrets, the policies, the spool's parent folder: the gateway
/// makes the spool folder itself) with the owner and mode
/// `owner` gives it, the configuration rewritten to point there (and to listen on 127.0.0.1).
struct Emulated {
    dir: TempDir,
    config: std::path::PathBuf,
}

impl Emulated {
    fn new(config: &str, owner: &dyn Fn(&str) -> Owner) -> Self {
        use std::os::unix::fs::{PermissionsExt, chown};
        let dir = TempDir::new("deploy-fs").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("fs");
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let (ca, cert, key) = invoiceguard_testkit::certificates(&certs).unwrap();
        let place = |path: &std::path::Path, owner: &Owner| {
            chown(path, Some(owner.uid), Some(owner.gid)).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(owner.mode)).unwrap();
        };
        let prefixes = [
            "/etc/invoiceguard",
            "/var/lib/invoiceguard",
            "/run/credentials/invoiceguard.service",
        ];
        let mut text = config.to_owned();
        for quoted in config.split('"').skip(1).step_by(2) {
            if !prefixes.iter().any(|p| quoted.starts_with(p)) {
                continue;
            }
            // Folders on the way: root-owned, traversable (0755), as on a real system.
            let local = root.join(quoted.trim_start_matches('/'));
            std::fs::create_dir_all(local.parent().unwrap()).unwrap();
            let who = owner(quoted);
            let name = quoted.rsplit('/').next().unwrap();
            match name {
                "policies" => {
                    assert_eq!(super::policy::policy_copy(local.parent().unwrap()), local);
                    for entry in std::fs::read_dir(&local).unwrap() {
                        place(&entry.unwrap().path(), &who);
                    }
                    place(&local, &Owner { mode: 0o755, ..who });
                }
                // The spool's folder is the gateway's to make (0700) inside the mounted one.
                "audit" => place(local.parent().unwrap(), &who),
                _ => {
                    let source = match name {
                        n if n.contains("ca") && n.ends_with(".pem") => Some(&ca),
                        n if n.ends_with(".key") => Some(&key),
                        n if n.ends_with(".crt") || n.ends_with(".pem") => Some(&cert),
                        _ => None,
                    };
                    match source {
                        Some(source) => std::fs::copy(source, &local).map(drop).unwrap(),
                        None => {
                            std::fs::write(&local, "a-secret-of-thirty-two-bytes-long\n").unwrap()
                        }
                    }
                    place(&local, &who);
                }
            }
            text = text.replace(
                &format!("\"{quoted}\""),
                &format!("{:?}", local.display().to_string()),
            );
        }
        // Listeners on 127.0.0.1, on free ports.
        for public in ["0.0.0.0:8443", "0.0.0.0:9901", "127.0.0.1:9901"] {
            let port = invoiceguard_testkit::free_port().unwrap();
            text = text.replace(public, &format!("127.0.0.1:{port}"));
        }
        let config = root.join("etc/invoiceguard/invoiceguard.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, text).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        Self { dir, config }
    }

    /// Runs `args` (with the configuration's path in place of `/etc/invoiceguard/invoiceguard.toml`)
    /// as `user` (uid, gid, supplementary groups), for at most `seconds`.
    fn run(&self, args: &[&str], user: (u32, u32, &str), seconds: u64) -> (Option<i32>, String) {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace(
                    "/etc/invoiceguard/invoiceguard.toml",
                    &self.config.display().to_string(),
                )
            })
            .collect();
        run_as(&args, user, self.dir.path(), seconds)
    }
}

/// The container's command line as the manifest gives it (`args`).
fn container_args(manifest: &str) -> Vec<String> {
    let text = std::fs::read_to_string(deploy(manifest)).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("args: [\"serve\""))
        .unwrap();
    let inside = line.split_once('[').unwrap().1.rsplit_once(']').unwrap().0;
    inside
        .split(',')
        .map(|a| a.trim().trim_matches('"').to_owned())
        .collect()
}

#[test]
fn the_kubernetes_pods_start_as_their_unprivileged_user_with_the_mounted_files_modes() {
    // As the kubelet mounts them: ConfigMaps root-owned 0644; Secrets root-owned, group fsGroup
    // (10001), mode `defaultMode`; the spool an emptyDir of group fsGroup.
    for manifest in [
        "kubernetes/sidecar/invoicing-api.yaml",
        "kubernetes/tier/invoiceguard.yaml",
    ] {
        let text = std::fs::read_to_string(deploy(manifest)).unwrap();
        assert!(
            text.contains("fsGroup: 10001"),
            "{manifest}: the secrets' group"
        );
        let secret_mode = if text.contains("defaultMode: 0440") {
            0o440
        } else {
            0o400
        };
        let mounted = |path: &str| match path {
            p if p.contains("/secrets/") || p.contains("/tls/") => Owner {
                uid: 0,
                gid: 10001,
                mode: secret_mode,
            },
            p if p.starts_with("/var/lib/invoiceguard") => Owner {
                uid: 0,
                gid: 10001,
                mode: 0o2775,
            },
            _ => Owner {
                uid: 0,
                gid: 0,
                mode: 0o644,
            },
        };
        let pod = Emulated::new(&embedded_config(manifest), &mounted);
        let args = container_args(manifest);
        assert_eq!(
            args,
            ["serve", "--config", "/etc/invoiceguard/invoiceguard.toml"],
            "{manifest}"
        );
        let check = ["check", "--config", "/etc/invoiceguard/invoiceguard.toml"];
        let (code, out) = pod.run(&check, (10001, 10001, "10001"), 20);
        assert_eq!(code, Some(0), "{manifest}: check as uid 10001: {out}");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out) = pod.run(&args, (10001, 10001, "10001"), 3);
        assert_eq!(
            code, None,
            "{manifest}: the container's command as uid 10001 did not keep running: {out}"
        );
        // Mounted as before (root-owned 0400), the same files cannot be read: this test can fail.
        let root_only = |path: &str| match path {
            p if p.contains("/secrets/") || p.contains("/tls/") => Owner {
                uid: 0,
                gid: 0,
                mode: 0o400,
            },
            other => mounted(other),
        };
        let pod = Emulated::new(&embedded_config(manifest), &root_only);
        let (code, out) = pod.run(&check, (10001, 10001, "10001"), 20);
        assert_eq!(code, Some(1), "{manifest}: root-only secrets: {out}");
    }
    // The sidecar keeps its state in memory: one replica.
    let sidecar = std::fs::read_to_string(deploy("kubernetes/sidecar/invoicing-api.yaml")).unwrap();
    assert!(!sidecar.contains("backend = \"redis\""));
    assert!(
        sidecar.contains("replicas: 1 "),
        "memory state, one replica"
    );
}

#[test]
fn the_systemd_unit_starts_its_commands_as_a_dynamic_user_with_credentials() {
    // /etc/invoiceguard root-owned and public; the secrets as systemd credentials (owned by the
    // service user, 0400); the state directory the service user's, 0700.
    let unit = std::fs::read_to_string(deploy("systemd/invoiceguard.service")).unwrap();
    assert!(unit.contains("DynamicUser=yes"));
    let config = std::fs::read_to_string(deploy("systemd/invoiceguard.toml")).unwrap();
    let nobody = 65534;
    let mut credentials = Vec::new();
    let service = |path: &str| match path {
        p if p.starts_with("/run/credentials/invoiceguard.service/") => Owner {
            uid: nobody,
            gid: nobody,
            mode: 0o400,
        },
        p if p.starts_with("/var/lib/invoiceguard") => Owner {
            uid: nobody,
            gid: nobody,
            mode: 0o700,
        },
        _ => Owner {
            uid: 0,
            gid: 0,
            mode: 0o644,
        },
    };
    for quoted in config.split('"').skip(1).step_by(2) {
        if let Some(name) = quoted.strip_prefix("/run/credentials/invoiceguard.service/") {
            credentials.push(name.to_owned());
        }
    }
    // Every credential the configuration names is one the unit loads.
    for name in &credentials {
        assert!(
            unit.contains(&format!("LoadCredential={name}:")),
            "{name} is not loaded by the unit"
        );
    }
    assert!(credentials.len() >= 4, "{credentials:?}");
    let host = Emulated::new(&config, &service);
    for directive in ["ExecStartPre=", "ExecStart="] {
        let line = unit.lines().find(|l| l.starts_with(directive)).unwrap();
        let args: Vec<&str> = line
            .trim_start_matches(directive)
            .split_whitespace()
            .skip(1)
            .collect();
        let seconds = if directive == "ExecStart=" { 3 } else { 20 };
        let (code, out) = host.run(&args, (nobody, nobody, ""), seconds);
        let expected = if directive == "ExecStart=" {
            None
        } else {
            Some(0)
        };
        assert_eq!(code, expected, "{directive}{}: {out}", args.join(" "));
    }
}
