//! The gateway binary (`invoiceguard serve`) as a child process on a free port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::dirs::{TempDir, free_port, repo_root};

/// A running gateway, stopped (by its pid) when dropped.
pub struct GatewayProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`.
    pub url: String,
    /// The admin listener, `http://127.0.0.1:PORT`.
    pub admin_url: String,
    /// Its audit spool folder.
    pub spool: PathBuf,
    /// Where its standard output goes (the audit events again: `[audit] stdout = true`).
    pub stdout_file: PathBuf,
    dir: TempDir,
}

impl GatewayProcess {
    /// Writes a configuration (the baseline policies, an audit spool in a fresh folder and a copy
    /// of every event on standard output, a free port; `sections` are appended and may hold `[upstream]`, `[authn]`, `[listen]` extras) and
    /// starts `binary serve` with it. `https` selects the URL scheme when `sections` set up TLS.
    pub async fn start(binary: &Path, sections: &str, https: bool) -> anyhow::Result<Self> {
        Self::start_with_policies(binary, sections, https, &repo_root().join("policies"), "").await
    }

    /// Like [`GatewayProcess::start`], with another policy folder and more `[policy]` lines.
    /// A start whose port was taken meanwhile is tried again on other ports.
    pub async fn start_with_policies(
        binary: &Path,
        sections: &str,
        https: bool,
        policies: &Path,
        policy_extra: &str,
    ) -> anyhow::Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::attempt(binary, sections, https, policies, policy_extra, (None, "")).await {
                Err(error) if attempt < 3 && error.to_string().contains("cannot listen") => {
                    continue;
                }
                result => return result,
            }
        }
    }

    /// Like [`GatewayProcess::start`], with the audit spool in `spool` (when given) and more
    /// `[audit]` lines, e.g. `max_bytes = 8192`.
    pub async fn start_with_audit(
        binary: &Path,
        sections: &str,
        spool: Option<&Path>,
        audit_lines: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_audit_and_policy(binary, sections, spool, audit_lines, "").await
    }

    /// Like [`GatewayProcess::start_with_audit`], with more `[policy]` lines.
    pub async fn start_with_audit_and_policy(
        binary: &Path,
        sections: &str,
        spool: Option<&Path>,
        audit_lines: &str,
        policy_extra: &str,
    ) -> anyhow::Result<Self> {
        Self::attempt(
            binary,
            sections,
            false,
            &repo_root().join("policies"),
            policy_extra,
            (spool, audit_lines),
        )
        .await
    }

    async fn attempt(
        binary: &Path,
        sections: &str,
        https: bool,
        policies: &Path,
        policy_extra: &str,
        (spool, audit_lines): (Option<&Path>, &str),
    ) -> anyhow::Result<Self> {
        let dir = TempDir::new("gateway")?;
        let port = free_port()?;
        // Two ports released one after the other may be the same one.
        let mut admin_port = free_port()?;
        while admin_port == port {
            admin_port = free_port()?;
        }
        let spool = spool.map_or_else(|| dir.path().join("audit"), Path::to_path_buf);
        let mut sections = sections
            .replace("{port}", &port.to_string())
            .replace("{admin_port}", &admin_port.to_string());
        if !sections.contains("[admin]") {
            sections.push_str(&format!(
                "\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\n"
            ));
        }
        // Tests of other features send many bad tokens on purpose: brute-force protection gets
        // its own test, with its own `[limits]`.
        if !sections.contains("[limits]") {
            sections.push_str(
                "\n[limits]\nfailed_auth_per_ip = 100000\nfailed_auth_per_subject = 100000\n",
            );
        }
        let stdout = if audit_lines.contains("stdout") {
            ""
        } else {
            "stdout = true\n"
        };
        let config = format!(
            "[policy]\ndir = {policies:?}\n{policy_extra}\n\n[audit]\nspool = {spool:?}\n{stdout}{audit_lines}\n\n{sections}\n"
        );
        if !config.contains("[listen]") {
            bail!("the sections must hold a [listen] with address = \"127.0.0.1:{{port}}\"");
        }
        let config_path = dir.path().join("invoiceguard.toml");
        std::fs::write(&config_path, config)?;
        let stdout_file = dir.path().join("stdout.jsonl");
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("INVOICEGUARD_LOG", "warn")
            .stdout(std::fs::File::create(&stdout_file)?)
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?)
            .spawn()?;
        let url = if https {
            format!("https://localhost:{port}")
        } else {
            format!("http://127.0.0.1:{port}")
        };
        let mut gateway = Self {
            child,
            url,
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            spool,
            stdout_file,
            dir,
        };
        gateway.wait_ready(port).await?;
        Ok(gateway)
    }

    /// Ready when the public port accepts, the admin listener answers `/healthz` (when this
    /// gateway has one), and the process is still ours and alive.
    async fn wait_ready(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the gateway exited at start ({status}): {}",
                    self.stderr_text()
                );
            }
            let public = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            let admin = crate::client::get(&format!("{}/healthz", self.admin_url), None)
                .await
                .is_ok_and(|reply| reply.status == 200);
            if public && admin {
                tokio::time::sleep(Duration::from_millis(30)).await;
                if self.child.try_wait()?.is_none() {
                    return Ok(());
                }
                continue;
            }
            if Instant::now() > deadline {
                bail!("the gateway did not listen on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The gateway's folder (its configuration and audit spool live there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The spool's segment files, oldest first.
    pub fn segments(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.spool)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The spool's text, every segment in order.
    pub fn audit_text(&self) -> String {
        self.segments()
            .iter()
            .map(|segment| std::fs::read_to_string(segment).unwrap_or_default())
            .collect()
    }

    /// Every audit event written so far, in spool order.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        self.audit_text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The one `complete` audit event of `request_id` (panics in tests when there is not exactly
    /// one; a sensitive request also has an `authorized` event before it).
    pub fn audit_event(&self, request_id: &str) -> serde_json::Value {
        let matching: Vec<_> = self
            .audit_events()
            .into_iter()
            .filter(|event| event["request_id"] == request_id && event["stage"] == "complete")
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "audit events for request {request_id}: {matching:?}"
        );
        matching.into_iter().next().unwrap_or_default()
    }

    /// Kills the gateway (SIGKILL: no drain, no flush) and starts it again with the same
    /// configuration, ports and audit spool.
    pub async fn kill_and_restart(&mut self, binary: &Path) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default();
        self.child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(self.config_file())
            .env("INVOICEGUARD_LOG", "warn")
            .stdout(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&self.stdout_file)?,
            )
            .stderr(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(self.dir.path().join("stderr.log"))?,
            )
            .spawn()?;
        self.wait_ready(port).await
    }

    /// Sends SIGHUP (reload the policies).
    pub fn hangup(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -HUP failed");
        }
        Ok(())
    }

    /// What it wrote to standard error (its logs), so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file it runs with.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("invoiceguard.toml")
    }

    /// Asks the gateway to stop (SIGTERM) and waits for it; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> anyhow::Result<bool> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill failed");
        }
        Ok(self.child.wait()?.success())
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
