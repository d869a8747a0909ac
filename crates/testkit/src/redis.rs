//! A private `redis-server` on a free port, stopped by the pid in its pidfile.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::dirs::{TempDir, free_port};

/// A running Redis, stopped when dropped.
pub struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
    running: bool,
}

impl Redis {
    /// Starts a Redis without persistence on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let mut redis = Self {
            port: free_port()?,
            dir: TempDir::new("redis")?,
            running: false,
        };
        redis.launch().await?;
        Ok(redis)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("redis.pid")
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let status = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "yes", "--pidfile"])
            .arg(self.pidfile())
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .status()
            .context("cannot start redis-server (is it installed? `make test` installs it)")?;
        if !status.success() {
            bail!("redis-server exited with {status}");
        }
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not listen on port {} within 10 s",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Kills the server (an outage) and waits until its port is closed.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        let pid = std::fs::read_to_string(self.pidfile())?.trim().to_owned();
        Command::new("kill").args(["-KILL", &pid]).status()?;
        self.running = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            if Instant::now() > deadline {
                bail!("redis-server {pid} did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.pidfile());
        Ok(())
    }

    /// Starts the server again on the same port (its data is gone, as after a crash without
    /// persistence).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.launch().await
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
