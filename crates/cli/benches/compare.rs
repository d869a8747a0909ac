//! The side-by-side benchmark (`make bench`): on one machine, in one run, interleaved, the same
//! upstream (the example invoicing API) reached directly, through nginx as a plain reverse proxy,
//! through Apache with mod_auth_openidc validating the same JWTs against the same IdP keys,
//! through invoiceguard's accept and forward phases alone (`proxy_only`), and through the full
//! invoiceguard pipeline (JWT, Cedar baseline, memory state, audit spool with a file sink).
//!
//! For each: the maximum requests per second (closed loop), latency p50 / p99 at one fixed rate
//! for all (open loop with at most 64 requests in flight, as wrk2 holds its connections;
//! measured from each request's scheduled time), and the proxy's CPU time
//! per request (from /proc, its whole process tree) — with many distinct tokens (thousands,
//! rotated; invoiceguard's token and decision caches off, so no proxy is flattered) and with one
//! hot token (both caches on).
//! The proxies are pinned to CPU 1, the upstream, the IdP and this load generator to CPU 0.
//! Writes `target/bench/compare.json` and `compare.md`. Under `cargo test` (no `--bench`) it
//! does nothing.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a bench fails loudly at setup"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use invoiceguard_testkit::{GatewayProcess, Idp, Redis, TempDir, free_port, repo_root};
use serde_json::json;

const TOKENS: usize = 4000;
const CONNECTIONS: usize = 32;
/// At the fixed rate, requests in flight at most (so connections at most), as wrk2 holds its
/// connection count: a request that finds them all busy waits, and the wait counts in its
/// latency. Without a bound the client opened a connection for every waiting request, hundreds
/// after any hiccup, and what was measured was that connection storm (docs/performance.md).
const FIXED_RATE_CONNECTIONS: usize = 64;
const RUN: Duration = Duration::from_secs(8);
const ROUNDS: usize = 3;
const PATH: &str = "/invoices/INV-1";

/// One thing measured: where to send requests, which processes to charge CPU to, the answer
/// expected (200, or the refusal a forged token gets), and from how many source addresses
/// (127.0.0.1 alone, or one per connection: 127.0.1.1, 127.0.1.2, …).
struct Target {
    name: &'static str,
    url: String,
    root_pid: u32,
    expect: u16,
    sources: u8,
}

/// A case: its name, the tokens sent (rotated), and what is measured.
type Case<'a> = (&'static str, &'a Arc<Vec<String>>, Vec<Target>);

impl Target {
    fn new(name: &'static str, url: String, root_pid: u32) -> Self {
        Self {
            name,
            url,
            root_pid,
            expect: 200,
            sources: 1,
        }
    }
}

/// User + system CPU seconds of a process tree (live descendants, and the reaped ones the root
/// waited for).
fn tree_cpu_seconds(root: u32) -> f64 {
    let mut parents: HashMap<u32, u32> = HashMap::new();
    let mut times: HashMap<u32, (f64, f64)> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
        parents.insert(pid, f[1].parse().unwrap_or(0));
        times.insert(pid, (n(11) + n(12), n(13) + n(14)));
    }
    let in_tree = |mut pid: u32| {
        while pid > 1 {
            if pid == root {
                return true;
            }
            pid = parents.get(&pid).copied().unwrap_or(0);
        }
        false
    };
    let ticks: f64 = times
        .iter()
        .filter(|(pid, _)| in_tree(**pid))
        .map(|(pid, (own, children))| own + if *pid == root { *children } else { 0.0 })
        .sum();
    ticks / 100.0
}

fn pin(pid: u32, cpu: &str) {
    let _ = Command::new("taskset")
        .args(["-a", "-cp", cpu, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

/// A process this bench started: asked to stop (SIGTERM, which nginx and Apache pass on to their
/// workers) and waited for when dropped — also when the bench fails half-way.
struct Running(Child);

impl Running {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn spawn(cpu: &str, program: &str, args: &[&str]) -> Running {
    Running(
        Command::new("taskset")
            .args(["-c", cpu, program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (make bench installs it): {e}")),
    )
}

async fn wait_listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A client whose connections come from `source` (127.0.0.1 when `None`).
fn client(idle: usize, source: Option<std::net::IpAddr>) -> HttpClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(source);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .build(connector)
}

/// The source address of connection `i` of a target with `sources` addresses.
fn source(sources: u8, i: usize) -> Option<std::net::IpAddr> {
    (sources > 1).then(|| {
        let n = u8::try_from(i % usize::from(sources)).unwrap();
        std::net::IpAddr::from([127, 0, 1, n + 1])
    })
}

async fn call(client: &HttpClient, url: &http::Uri, token: &str, expect: u16) -> bool {
    let request = http::Request::get(url.clone())
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    match client.request(request).await {
        Ok(response) => {
            let ok = response.status() == expect;
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Closed loop: `CONNECTIONS` workers for `RUN`. Returns (requests/s, errors).
async fn max_rate(target: &Target, tokens: &Arc<Vec<String>>) -> (f64, usize) {
    let url: http::Uri = target.url.parse().unwrap();
    let shared = client(CONNECTIONS, None);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + RUN;
    let mut workers = Vec::new();
    for i in 0..CONNECTIONS {
        let client = match source(target.sources, i) {
            Some(address) => client(1, Some(address)),
            None => shared.clone(),
        };
        let (url, tokens, next, expect) =
            (url.clone(), tokens.clone(), next.clone(), target.expect);
        workers.push(tokio::spawn(async move {
            let (mut done, mut errors) = (0usize, 0usize);
            while Instant::now() < deadline {
                let token = &tokens[next.fetch_add(1, Ordering::Relaxed) % tokens.len()];
                if call(&client, &url, token, expect).await {
                    done += 1;
                } else {
                    errors += 1;
                }
            }
            (done, errors)
        }));
    }
    let (mut done, mut errors) = (0, 0);
    for worker in workers {
        let (d, e) = worker.await.unwrap();
        done += d;
        errors += e;
    }
    (done as f64 / RUN.as_secs_f64(), errors)
}

/// Open loop at `rate` requests/s for `RUN`, at most `FIXED_RATE_CONNECTIONS` in flight: latency
/// of each from its scheduled start.
/// Returns (p50 ms, p99 ms, errors).
async fn fixed_rate(target: &Target, tokens: &Arc<Vec<String>>, rate: f64) -> (f64, f64, usize) {
    let url: http::Uri = target.url.parse().unwrap();
    let expect = target.expect;
    let client = client(256, source(target.sources, 0));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * RUN.as_secs_f64()) as usize;
    let start = Instant::now();
    let mut requests = Vec::with_capacity(total);
    let permits = Arc::new(tokio::sync::Semaphore::new(FIXED_RATE_CONNECTIONS));
    for i in 0..total {
        let scheduled = start + interval * u32::try_from(i).unwrap();
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url, tokens, permits) =
            (client.clone(), url.clone(), tokens.clone(), permits.clone());
        requests.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            let ok = call(&client, &url, &tokens[i % tokens.len()], expect).await;
            (scheduled.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for request in requests {
        let (ms, ok) = request.await.unwrap();
        latencies.push(ms);
        errors += usize::from(!ok);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99), errors)
}

/// The OpenSSL floor of one verification on CPU 1 (`openssl speed`), in µs: RS256 (RSA 2048)
/// and ES256 (ECDSA P-256).
fn openssl_floors() -> (f64, f64) {
    let output = Command::new("taskset")
        .args([
            "-c",
            "1",
            "openssl",
            "speed",
            "-seconds",
            "2",
            "rsa2048",
            "ecdsap256",
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let per_second = |marker: &str| {
        text.lines()
            .find(|line| line.contains(marker))
            .and_then(|line| line.split_whitespace().last())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let us = |verifies: f64| (1e6 / verifies * 100.0).round() / 100.0;
    (
        us(per_second("rsa 2048 bits")),
        us(per_second("(nistp256)")),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn version(command: &str, args: &[&str]) -> String {
    Command::new(command)
        .args(args)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or_default().trim().to_owned()
        })
        .unwrap_or_else(|_| "not found".to_owned())
}

fn nginx_config(dir: &Path, port: u16, upstream: u16) -> PathBuf {
    let path = dir.join("nginx.conf");
    std::fs::write(
        &path,
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\ndaemon off;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  upstream api {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://api;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                 proxy_set_header X-Forwarded-For $remote_addr;\n    }}\n  }}\n}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

/// An RSA key and its certificate (`idp-rsa.pem`) made with openssl, as the IdP's keys file (the
/// RSA key first, so it signs; an EC key after it for the IdP's own use). Returns the keys file.
fn rsa_signing_key(dir: &Path) -> PathBuf {
    let status = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "idp-rsa.key",
            "-out",
            "idp-rsa.pem",
            "-days",
            "2",
            "-subj",
            "/CN=bench-idp",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl failed");
    let keys = dir.join("keys.json");
    let script = format!(
        "const c=require('crypto'),fs=require('fs');\
         const rsa=c.createPrivateKey(fs.readFileSync({key:?})).export({{format:'jwk'}});\
         const ec=c.generateKeyPairSync('ec',{{namedCurve:'P-256'}}).privateKey.export({{format:'jwk'}});\
         fs.writeFileSync({out:?},JSON.stringify({{keys:[{{...rsa,kid:'{KID}',alg:'RS256'}},{{...ec,kid:'bench-es256',alg:'ES256'}}]}}));",
        key = dir.join("idp-rsa.key"),
        out = keys,
    );
    let status = Command::new("node").args(["-e", &script]).status().unwrap();
    assert!(status.success(), "node failed");
    keys
}

/// The RSA key's id.
const KID: &str = "bench-rs256";

fn apache_config(dir: &Path, port: u16, upstream: u16, certificate: &Path) -> PathBuf {
    let path = dir.join("httpd.conf");
    let modules = "/usr/lib/apache2/modules";
    std::fs::write(
        &path,
        format!(
            "ServerRoot {d}\nDefaultRuntimeDir {d}\nPidFile {d}/httpd.pid\nErrorLog {d}/apache-error.log\nLogLevel warn\n\
             ServerName localhost\nListen 127.0.0.1:{port}\nUser www-data\nGroup www-data\n\
             LoadModule mpm_event_module {m}/mod_mpm_event.so\n\
             LoadModule authn_core_module {m}/mod_authn_core.so\n\
             LoadModule authz_core_module {m}/mod_authz_core.so\n\
             LoadModule authz_user_module {m}/mod_authz_user.so\n\
             LoadModule proxy_module {m}/mod_proxy.so\n\
             LoadModule proxy_http_module {m}/mod_proxy_http.so\n\
             LoadModule auth_openidc_module {m}/mod_auth_openidc.so\n\
             StartServers 1\nServerLimit 1\nThreadsPerChild 64\nThreadLimit 64\nMaxRequestWorkers 64\n\
             MinSpareThreads 1\nMaxSpareThreads 64\nMaxConnectionsPerChild 0\n\
             KeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 30\n\
             OIDCOAuthVerifyCertFiles {KID}#{certificate}\nOIDCOAuthRemoteUserClaim sub\nOIDCCryptoPassphrase bench-passphrase\n\
             OIDCCacheType shm\n\
             <Location />\n  AuthType oauth20\n  Require claim aud:urn:invoiceguard:invoicing-api\n</Location>\n\
             ProxyPass / http://127.0.0.1:{upstream}/ keepalive=On\n",
            d = dir.display(),
            m = modules,
            certificate = certificate.display()
        ),
    )
    .unwrap();
    path
}

/// The load generator runs on one thread (on CPU 0, with the upstream and the IdP): with two, its
/// threads took CPU 0 from each other, and the requests they delayed went out in bursts that
/// showed as several milliseconds of p99 at the fixed rate (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("compare: run by `make bench` (it needs nginx and Apache)");
        return;
    }
    pin(std::process::id(), "0");
    let dir = TempDir::new("compare").unwrap();
    let release = repo_root().join("target/release");

    // The common upstream and the IdP, on CPU 0.
    let upstream_port = free_port().unwrap();
    let api = release.join("invoicing-api");
    let upstream = spawn(
        "0",
        api.to_str().unwrap(),
        &["--listen", &format!("127.0.0.1:{upstream_port}")],
    );
    wait_listening(upstream_port).await;
    // One RSA key for everyone: mod_auth_openidc 2.4 (Debian 12) crashes on EC certificates, so
    // the comparison uses RS256 tokens, verified by Apache from the key's certificate and by
    // invoiceguard from the IdP's JWKS — the same key.
    let keys = rsa_signing_key(dir.path());
    let idp = Idp::start_with_keys(&keys, free_port().unwrap())
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Many distinct tokens, as alice (invoicing, MFA), signed by the IdP's RSA key (and as many
    // by its P-256 key, for the ES256 case).
    let idp = Arc::new(idp);
    let sign_many = |kid: &'static str| {
        let idp = idp.clone();
        async move {
            let mut tokens = Vec::with_capacity(TOKENS);
            for batch in (0..TOKENS).collect::<Vec<_>>().chunks(64) {
                let signing: Vec<_> = batch
                    .iter()
                    .map(|i| {
                        let (idp, i) = (idp.clone(), *i);
                        tokio::spawn(async move {
                            let payload = json!({
                                "iss": idp.issuer, "sub": "alice", "aud": "urn:invoiceguard:invoicing-api",
                                "iat": now, "exp": now + 3600, "auth_time": now, "jti": format!("bench-{i}"),
                                "client_id": "invoiceguard-demo", "scope": "openid invoices:read", "roles": ["invoicing"],
                                "amr": ["pwd", "otp"], "acr": "urn:invoiceguard:acr:mfa"
                            });
                            idp.sign(json!({"typ": "at+jwt"}), payload, Some(kid)).await.unwrap()
                        })
                    })
                    .collect();
                for signed in signing {
                    tokens.push(signed.await.unwrap());
                }
            }
            Arc::new(tokens)
        }
    };
    let many = sign_many(KID).await;
    let many_es256 = sign_many("bench-es256").await;
    let hot = Arc::new(vec![many[0].clone()]);
    // The same tokens with a signature that does not verify (its first character changed).
    let forged = Arc::new(
        many.iter()
            .map(|token| {
                let (signed, signature) = token.rsplit_once('.').unwrap();
                let first = if signature.starts_with('A') { 'B' } else { 'A' };
                format!("{signed}.{first}{}", &signature[1..])
            })
            .collect::<Vec<_>>(),
    );

    // The proxies, on CPU 1.
    let nginx_port = free_port().unwrap();
    let nginx = spawn(
        "1",
        "nginx",
        &[
            "-c",
            nginx_config(dir.path(), nginx_port, upstream_port)
                .to_str()
                .unwrap(),
        ],
    );
    let apache_port = free_port().unwrap();
    let certificate = dir.path().join("idp-rsa.pem");
    let apache_conf = apache_config(dir.path(), apache_port, upstream_port, &certificate);
    let apache = spawn(
        "1",
        "apache2",
        &["-f", apache_conf.to_str().unwrap(), "-DFOREGROUND"],
    );
    let proxy_port = free_port().unwrap();
    let proxy_only = release.join("examples/proxy_only");
    let proxy = spawn(
        "1",
        proxy_only.to_str().unwrap(),
        &[
            "--listen",
            &format!("127.0.0.1:{proxy_port}"),
            "--upstream",
            &format!("http://127.0.0.1:{upstream_port}"),
        ],
    );
    for port in [nginx_port, apache_port, proxy_port] {
        wait_listening(port).await;
    }
    // Redis for the full pipeline on the shared backend, on CPU 0 with the upstream.
    let redis = Redis::start().await.unwrap();
    pin(redis.pid().unwrap(), "0");
    let sections = |cache: usize, more: &str| {
        format!(
            "[listen]\naddress = \"127.0.0.1:{{port}}\"\nworker_threads = 1\n\n[upstream]\nurl = \"http://127.0.0.1:{upstream_port}\"\n\n\
             [authn]\nissuer = \"{}\"\naudience = [\"urn:invoiceguard:invoicing-api\"]\nrequire_typ = \"at+jwt\"\n\
             mfa_acr = [\"urn:invoiceguard:acr:mfa\"]\ntoken_cache_entries = {cache}\n\n\
             [[audit.sinks]]\nname = \"archive\"\nfile = \"archive.log\"\n{more}",
            idp.issuer
        )
    };
    // COMPARE_GATEWAY=<binary> measures another build of the gateway (an earlier commit's, for
    // a before-and-after in one run of this bench).
    let binary = std::env::var_os("COMPARE_GATEWAY")
        .map_or_else(|| release.join("invoiceguard"), PathBuf::from);
    let start = |sections: String, decision_cache: bool| {
        let binary = binary.clone();
        async move {
            let policy = if decision_cache {
                ""
            } else {
                "decision_cache_entries = 0"
            };
            let gateway = GatewayProcess::start_with_audit_and_policy(
                &binary,
                &sections,
                None,
                "stdout = false",
                policy,
            )
            .await
            .unwrap();
            pin(gateway.pid(), "1");
            gateway
        }
    };
    // Many tokens: nothing cached, every request verified and decided. Hot token: the token and
    // decision caches on, as in the product's defaults.
    let full_cold = start(sections(0, ""), false).await;
    let full_hot = start(sections(10_000, ""), true).await;
    let redis_state = format!(
        "\n[state]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"\n",
        redis.port
    );
    let full_hot_redis = start(sections(10_000, &redis_state), true).await;
    // Forged tokens from one address past its failure limit (the default, 30 a minute): refused
    // before any signature check. And from many addresses each under its limit (the limit
    // raised out of reach): every forged token's signature checked, the most a flood of
    // addresses that are never locked can cost.
    let full_locked = start(
        sections(10_000, "\n[limits]\nfailed_auth_per_ip = 30\n"),
        true,
    )
    .await;
    let full_unlocked = start(sections(10_000, ""), true).await;

    let direct = || {
        Target::new(
            "direct",
            format!("http://127.0.0.1:{upstream_port}{PATH}"),
            upstream.id(),
        )
    };
    let nginx_target = || {
        Target::new(
            "nginx",
            format!("http://127.0.0.1:{nginx_port}{PATH}"),
            nginx.id(),
        )
    };
    let apache_target = || {
        Target::new(
            "apache-mod_auth_openidc",
            format!("http://127.0.0.1:{apache_port}{PATH}"),
            apache.id(),
        )
    };
    let proxy_target = || {
        Target::new(
            "invoiceguard-proxy-only",
            format!("http://127.0.0.1:{proxy_port}{PATH}"),
            proxy.id(),
        )
    };
    let full = |name: &'static str, gateway: &GatewayProcess| {
        Target::new(name, format!("{}{PATH}", gateway.url), gateway.pid())
    };
    let cases: Vec<Case<'_>> = vec![
        (
            "many-tokens",
            &many,
            vec![
                direct(),
                nginx_target(),
                apache_target(),
                proxy_target(),
                full("invoiceguard-full", &full_cold),
            ],
        ),
        (
            "many-tokens-es256",
            &many_es256,
            vec![nginx_target(), full("invoiceguard-full", &full_cold)],
        ),
        (
            "hot-token",
            &hot,
            vec![
                direct(),
                nginx_target(),
                apache_target(),
                proxy_target(),
                full("invoiceguard-full", &full_hot),
                full("invoiceguard-full-redis", &full_hot_redis),
            ],
        ),
        (
            "forged-tokens",
            &forged,
            vec![
                nginx_target(),
                proxy_target(),
                Target {
                    expect: 429,
                    ..full("invoiceguard-full-one-address-locked", &full_locked)
                },
                Target {
                    expect: 401,
                    sources: 32,
                    ..full("invoiceguard-full-32-addresses-unlocked", &full_unlocked)
                },
            ],
        ),
    ];
    // Every target answers as expected before anything is measured.
    for (_, tokens, targets) in &cases {
        for target in targets {
            let url: http::Uri = target.url.parse().unwrap();
            let answered = call(&client(1, None), &url, &tokens[0], target.expect).await;
            assert!(
                answered || target.expect == 429,
                "{} does not answer {}",
                target.name,
                target.expect
            );
        }
    }

    // COMPARE_ONLY=<case>/<target>,… narrows a run to some measurements (to look into one);
    // the report then holds only those.
    let only = std::env::var("COMPARE_ONLY").unwrap_or_default();
    let mut report = Vec::new();
    for (case, tokens, targets) in cases {
        let list: Vec<Target> = targets
            .into_iter()
            .filter(|t| {
                only.is_empty()
                    || only
                        .split(',')
                        .any(|o| o == format!("{case}/{}", t.name).as_str())
            })
            .collect();
        if list.is_empty() {
            continue;
        }
        let mut rps: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut cpu: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut errors: HashMap<&str, usize> = HashMap::new();
        for _ in 0..ROUNDS {
            for target in &list {
                let before = tree_cpu_seconds(target.root_pid);
                let (rate, failed) = max_rate(target, tokens).await;
                let used = tree_cpu_seconds(target.root_pid) - before;
                rps.entry(target.name).or_default().push(rate);
                cpu.entry(target.name)
                    .or_default()
                    .push(used / (rate * RUN.as_secs_f64()) * 1e6);
                *errors.entry(target.name).or_default() += failed;
            }
        }
        // One rate for all: half the slowest target's maximum.
        let slowest = list
            .iter()
            .map(|t| median(rps[t.name].clone()))
            .fold(f64::INFINITY, f64::min);
        let rate = (slowest * 0.5).max(100.0).round();
        let mut latency: HashMap<&str, (f64, f64, usize)> = HashMap::new();
        for target in &list {
            latency.insert(target.name, fixed_rate(target, tokens, rate).await);
        }
        for target in &list {
            let (p50, p99, late_errors) = latency[target.name];
            report.push(json!({
                "case": case,
                "target": target.name,
                "max_rps": median(rps[target.name].clone()).round(),
                "cpu_us_per_request": (median(cpu[target.name].clone()) * 10.0).round() / 10.0,
                "fixed_rate_rps": rate,
                "p50_ms": (p50 * 1000.0).round() / 1000.0,
                "p99_ms": (p99 * 1000.0).round() / 1000.0,
                "errors": errors[target.name] + late_errors,
            }));
        }
    }

    let get = |case: &str, target: &str, field: &str| {
        report
            .iter()
            .find(|r| r["case"] == case && r["target"] == target)
            .and_then(|r| r[field].as_f64())
            .unwrap_or(f64::NAN)
    };
    let ratio = |a: f64, b: f64| (a / b * 100.0).round() / 100.0;
    let mut ratios = Vec::new();
    for case in ["many-tokens", "hot-token"] {
        ratios.push(json!({
            "case": case,
            "proxy_only_rps_vs_nginx": ratio(get(case, "invoiceguard-proxy-only", "max_rps"), get(case, "nginx", "max_rps")),
            "proxy_only_cpu_vs_nginx": ratio(get(case, "invoiceguard-proxy-only", "cpu_us_per_request"), get(case, "nginx", "cpu_us_per_request")),
            "full_cpu_vs_nginx": ratio(get(case, "invoiceguard-full", "cpu_us_per_request"), get(case, "nginx", "cpu_us_per_request")),
            "full_rps_vs_proxy_only": ratio(get(case, "invoiceguard-full", "max_rps"), get(case, "invoiceguard-proxy-only", "max_rps")),
            "full_rps_vs_apache": ratio(get(case, "invoiceguard-full", "max_rps"), get(case, "apache-mod_auth_openidc", "max_rps")),
            "full_cpu_vs_apache": ratio(get(case, "invoiceguard-full", "cpu_us_per_request"), get(case, "apache-mod_auth_openidc", "cpu_us_per_request")),
            "full_added_p99_ms_over_direct": ((get(case, "invoiceguard-full", "p99_ms") - get(case, "direct", "p99_ms")) * 1000.0).round() / 1000.0,
        }));
    }
    // The issue-28 goals, each as the figure its goal is stated in.
    let floors = openssl_floors();
    let rs256 = get("many-tokens", "invoiceguard-full", "cpu_us_per_request");
    let es256 = get(
        "many-tokens-es256",
        "invoiceguard-full",
        "cpu_us_per_request",
    );
    let goals = json!({
        "hot_full_cpu_vs_nginx": ratio(get("hot-token", "invoiceguard-full", "cpu_us_per_request"), get("hot-token", "nginx", "cpu_us_per_request")),
        "cold_rs256_full_cpu_vs_nginx": ratio(rs256, get("many-tokens", "nginx", "cpu_us_per_request")),
        "cold_es256_full_cpu_vs_nginx": ratio(es256, get("many-tokens-es256", "nginx", "cpu_us_per_request")),
        "openssl_verify_us": {"rs256": floors.0, "es256": floors.1},
        "cold_es256_us": es256,
        "cold_es256_limit_us": ((1.3 * rs256 + (floors.1 - floors.0)) * 10.0).round() / 10.0,
        "redis_vs_memory_cpu": ratio(get("hot-token", "invoiceguard-full-redis", "cpu_us_per_request"), get("hot-token", "invoiceguard-full", "cpu_us_per_request")),
        "redis_added_p99_ms_over_memory": ((get("hot-token", "invoiceguard-full-redis", "p99_ms") - get("hot-token", "invoiceguard-full", "p99_ms")) * 1000.0).round() / 1000.0,
        "refusal_locked_cpu_vs_proxy_only": ratio(get("forged-tokens", "invoiceguard-full-one-address-locked", "cpu_us_per_request"), get("forged-tokens", "invoiceguard-proxy-only", "cpu_us_per_request")),
        "refusals_per_s_one_address": get("forged-tokens", "invoiceguard-full-one-address-locked", "max_rps"),
        "refusals_per_s_32_addresses_unlocked": get("forged-tokens", "invoiceguard-full-32-addresses-unlocked", "max_rps"),
        "refusal_unlocked_cpu_us": get("forged-tokens", "invoiceguard-full-32-addresses-unlocked", "cpu_us_per_request"),
    });
    let machine = json!({
        "cpu": std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines()
            .find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?").trim(),
        "cores": std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines()
            .filter(|l| l.starts_with("processor")).count(),
        "kernel": version("uname", &["-r"]),
    });
    let versions = json!({
        "nginx": version("nginx", &["-v"]),
        "apache": version("apache2", &["-v"]),
        "mod_auth_openidc": version("dpkg-query", &["-W", "-f=${Version}", "libapache2-mod-auth-openidc"]),
        "invoiceguard": env!("CARGO_PKG_VERSION"),
        "rustc": version("rustc", &["--version"]),
    });
    let parameters = json!({
        "path": PATH, "tokens": TOKENS, "connections": CONNECTIONS, "fixed_rate_connections": FIXED_RATE_CONNECTIONS, "run_s": RUN.as_secs(), "rounds": ROUNDS,
        "pinning": "proxies on CPU 1; upstream, IdP and load generator (one thread) on CPU 0",
        "tokens_alg": "RS256 (2048), one key: Apache from its certificate, invoiceguard from the JWKS",
        "invoiceguard_full": "JWT RS256 (token and decision caches off for many-tokens, on for hot-token), Cedar baseline, memory state, audit spool + file sink, one worker thread (`listen.worker_threads = 1`, as nginx has one worker)",
        "invoiceguard_full_redis": "the same, hot token, with the Redis backend (Redis on CPU 0)",
        "many_tokens_es256": "the many-tokens case with ES256 (P-256) tokens from the same IdP",
        "forged_tokens": "the many tokens with their signature changed: from 127.0.0.1 past its failure limit (30 a minute: 429 before any signature check), and from 32 addresses with the limit out of reach (401 after the signature check); proxy-only forwards them (its CPU per request the reference)",
        "apache": "mod_auth_openidc AuthType oauth20, JWT verified against the IdP's JWKS, event MPM 1x64 threads",
        "nginx": "proxy_pass with an upstream keepalive pool, 1 worker",
    });
    let document = json!({"machine": machine, "versions": versions, "parameters": parameters, "results": report, "ratios": ratios, "goals": goals});
    let out = repo_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("compare.json"),
        serde_json::to_string_pretty(&document).unwrap(),
    )
    .unwrap();
    let mut md = String::from("# invoiceguard side by side\n\n");
    md += &format!("Machine: {machine}\n\nVersions: {versions}\n\nParameters: {parameters}\n\n");
    md += "| case | target | max req/s | CPU µs/req | p50 ms @ rate | p99 ms @ rate | rate | errors |\n|---|---|---|---|---|---|---|---|\n";
    for r in &report {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["case"].as_str().unwrap_or(""),
            r["target"].as_str().unwrap_or(""),
            r["max_rps"],
            r["cpu_us_per_request"],
            r["p50_ms"],
            r["p99_ms"],
            r["fixed_rate_rps"],
            r["errors"]
        );
    }
    md += "\n| case | proxy-only/nginx req/s | proxy-only/nginx CPU | full/proxy-only req/s | full/Apache req/s | full/Apache CPU | full p99 − direct p99 (ms) |\n|---|---|---|---|---|---|---|\n";
    for r in &ratios {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r["case"].as_str().unwrap_or(""),
            r["proxy_only_rps_vs_nginx"],
            r["proxy_only_cpu_vs_nginx"],
            r["full_rps_vs_proxy_only"],
            r["full_rps_vs_apache"],
            r["full_cpu_vs_apache"],
            r["full_added_p99_ms_over_direct"]
        );
    }
    md += &format!(
        "\nGoals (issue 28): {}\n",
        serde_json::to_string_pretty(&goals).unwrap()
    );
    std::fs::write(out.join("compare.md"), &md).unwrap();
    println!("{md}");

    drop((nginx, apache, proxy, upstream));
    drop((
        full_cold,
        full_hot,
        full_hot_redis,
        full_locked,
        full_unlocked,
    ));
    drop((redis, idp));
}
