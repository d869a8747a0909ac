//! A private syslog collector: `rsyslogd` in the foreground with an `imtcp` input on a free port,
//! writing each message's MSG part (the audit event) as one line of a file; the messages rsyslog's
//! own severity filter `*.warning` lets through ("warning or worse") to a second file; and each
//! raw message as received to a third.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::dirs::{TempDir, free_port};

/// A running collector, stopped (by its pid) when dropped.
pub struct Collector {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// With TLS (RFC 5425): the CA, certificate and key files of the collector.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Collector {
    /// Starts a collector over plain TCP.
    pub async fn start() -> anyhow::Result<Self> {
        let mut collector = Self {
            port: free_port()?,
            dir: TempDir::new("collector")?,
            child: None,
            tls: None,
        };
        collector.launch().await?;
        Ok(collector)
    }

    /// Starts a collector over TLS with the given CA, certificate and key (rsyslog's `ossl`
    /// driver).
    pub async fn start_tls(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let tls = Some((ca.to_owned(), cert.to_owned(), key.to_owned()));
        let mut collector = Self {
            port: free_port()?,
            dir: TempDir::new("collector")?,
            child: None,
            tls,
        };
        collector.launch().await?;
        Ok(collector)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let config = dir.join("rsyslog.conf");
        let (global, module) = match &self.tls {
            None => (String::new(), "module(load=\"imtcp\")".to_owned()),
            Some((ca, cert, key)) => (
                format!(
                    " DefaultNetstreamDriver=\"ossl\" DefaultNetstreamDriverCAFile=\"{}\" \
                     DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\"",
                    ca.display(),
                    cert.display(),
                    key.display()
                ),
                "module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")".to_owned(),
            ),
        };
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{d}\"{global})\n{module}\ninput(type=\"imtcp\" port=\"{p}\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%msg%\\n\")\n\
                 template(name=\"whole\" type=\"string\" string=\"%rawmsg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{d}/received.jsonl\" template=\"raw\")\n\
                 *.warning action(type=\"omfile\" file=\"{d}/warning-or-worse.jsonl\" template=\"raw\")\n\
                 *.* action(type=\"omfile\" file=\"{d}/raw.log\" template=\"whole\")\n",
                d = dir.display(),
                p = self.port
            ),
        )?;
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&config)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start rsyslogd (is it installed? `make test` installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("rsyslogd exited at start ({status})");
            }
            if Instant::now() > deadline {
                bail!("rsyslogd did not listen on port {} within 10 s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the collector (SIGTERM: it writes what it received, then exits).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it again on the same port, appending to the same file.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.launch().await
    }

    /// Every message received so far, parsed as JSON (unparsable lines are kept as strings).
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.read("received.jsonl")
    }

    /// The messages rsyslog's severity filter `*.warning` (syslog severity 4 or lower, i.e.
    /// warning or worse) let through.
    pub fn warning_or_worse(&self) -> Vec<serde_json::Value> {
        self.read("warning-or-worse.jsonl")
    }

    /// Every message as it arrived (the RFC 5424 header and the event), one per line.
    pub fn raw_messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("raw.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn read(&self, file: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| serde_json::Value::String(line.to_owned()))
            })
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
