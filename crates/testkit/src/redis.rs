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
    /// More `redis-server` arguments (a password, TLS, cluster mode, sentinel mode).
    extra: Vec<String>,
    /// The first argument, a configuration file (sentinel mode needs one).
    config_file: Option<PathBuf>,
}

impl Redis {
    /// Starts a Redis without persistence on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts a Redis with more `redis-server` arguments, e.g. `["--requirepass", "pw"]`.
    /// `{port}` and `{dir}` in them are replaced.
    pub async fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_on(free_port()?, extra).await {
                Ok(redis) => return Ok(redis),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    async fn start_on(port: u16, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = TempDir::new("redis")?;
        let extra = extra
            .iter()
            .map(|a| {
                a.replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.path().display().to_string())
            })
            .collect();
        let mut redis = Self {
            port,
            dir,
            running: false,
            extra,
            config_file: None,
        };
        redis.launch().await?;
        Ok(redis)
    }

    /// Starts a Sentinel watching the master on `master_port`, under the name `mymaster`.
    pub async fn start_sentinel(master_port: u16) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = TempDir::new("sentinel")?;
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "sentinel monitor mymaster 127.0.0.1 {master_port} 1\nsentinel down-after-milliseconds mymaster 1000\n"
            ),
        )?;
        let mut sentinel = Self {
            port,
            dir,
            running: false,
            extra: vec!["--sentinel".to_owned()],
            config_file: Some(config),
        };
        sentinel.launch().await?;
        Ok(sentinel)
    }

    /// The folder the server runs in (for certificates and the like).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Its URL (`redis://`; a TLS server wants `rediss://`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id, from its pidfile.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pidfile())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("redis.pid")
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new("redis-server");
        if let Some(config) = &self.config_file {
            command.arg(config);
        }
        // A TLS-only server listens on `--tls-port` alone.
        let plain_port = if self.extra.iter().any(|a| a == "--tls-port") {
            "0".to_owned()
        } else {
            self.port.to_string()
        };
        let status = command
            .args([
                "--port",
                &plain_port,
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
            .args(&self.extra)
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

    /// Stops the server without closing its port (`SIGSTOP`): connections hang, as behind a
    /// stalled network or a server stuck on a slow disk. [`Redis::resume`] lets it go on.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Lets a paused server go on (`SIGCONT`), its data intact.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = std::fs::read_to_string(self.pidfile())?.trim().to_owned();
        let status = Command::new("kill").args([signal, &pid]).status()?;
        if !status.success() {
            bail!("kill {signal} {pid} failed");
        }
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
        if self.running {
            let _ = self.resume();
        }
        let _ = self.kill();
    }
}

/// A Redis Cluster of three masters on free ports.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Starts three nodes in cluster mode and joins them (`redis-cli --cluster create`).
    pub async fn start() -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        while nodes.len() < 3 {
            // The cluster bus listens on port + 10000.
            let port = free_port()?;
            if port > 55_000 || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "{dir}/nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ];
            nodes.push(Redis::start_on(port, &args).await?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("cannot run redis-cli")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        // Wait until every node sees a healthy cluster.
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the cluster did not become healthy");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(Self { nodes })
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }
}
