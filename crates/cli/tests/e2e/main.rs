//! End to end through the real parts: the IdP (oidc-provider under node), the example invoicing
//! API, and the `invoiceguard` binary. Each test asserts what a user sees — status, problem body,
//! headers — and the audit event the request produced. One test binary; each module a concern.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test at the first broken step"
)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use invoiceguard_testkit::{
    GatewayProcess, Idp, Reply, TempDir, TlsClient, TokenRequest, Upstream, free_port, get, send,
    send_h2,
};
use serde_json::{Value, json};

mod approvals;
mod at_rest;
mod attacks;
mod audit;
mod deploy;
mod evidence;
mod faults;
mod identity;
mod lifecycle;
mod operations;
mod policy;
mod query;
mod schema;
mod sessions;
mod shared;
mod siem;
mod sinks;
mod walk;
mod watermarks;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_invoiceguard");

/// The IdP, the example API and a gateway in front of it.
pub(crate) struct World {
    pub(crate) idp: Idp,
    pub(crate) upstream: Upstream,
    pub(crate) gateway: GatewayProcess,
}

impl World {
    /// The baseline, with the default test configuration.
    pub(crate) async fn start() -> Self {
        Self::start_with("", None, "").await
    }

    /// With `extra` configuration after the usual sections (more `[authn]` keys, or whole
    /// tables), on `policies` (the baseline when `None`) with `policy_extra` `[policy]` lines.
    pub(crate) async fn start_with(
        extra: &str,
        policies: Option<&Path>,
        policy_extra: &str,
    ) -> Self {
        Self::start_with_listen("", extra, policies, policy_extra).await
    }

    /// Like [`World::start_with`], with more `[listen]` lines.
    pub(crate) async fn start_with_listen(
        listen_extra: &str,
        extra: &str,
        policies: Option<&Path>,
        policy_extra: &str,
    ) -> Self {
        let idp = Idp::start().await.unwrap();
        let upstream = Upstream::start().unwrap();
        let text = format!(
            "{}{extra}\n",
            sections(&idp.issuer, &upstream.url(), listen_extra)
        );
        let baseline = invoiceguard_testkit::repo_root().join("policies");
        let policies = policies.unwrap_or(&baseline);
        let gateway = GatewayProcess::start_with_policies(
            Path::new(BINARY),
            &text,
            false,
            policies,
            policy_extra,
        )
        .await
        .unwrap();
        Self {
            idp,
            upstream,
            gateway,
        }
    }

    /// With `extra` configuration and more `[audit]` lines (the spool in the gateway's folder).
    pub(crate) async fn start_audit(extra: &str, audit_lines: &str) -> Self {
        let idp = Idp::start().await.unwrap();
        let upstream = Upstream::start().unwrap();
        let text = format!("{}{extra}\n", sections(&idp.issuer, &upstream.url(), ""));
        let gateway = GatewayProcess::start_with_audit(Path::new(BINARY), &text, None, audit_lines)
            .await
            .unwrap();
        Self {
            idp,
            upstream,
            gateway,
        }
    }

    pub(crate) async fn token(&self, user: &str) -> String {
        self.idp
            .user_token(user, TokenRequest::default())
            .await
            .unwrap()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url)
    }
}

/// The configuration sections for a gateway trusting `issuer` in front of `upstream`.
pub(crate) fn sections(issuer: &str, upstream: &str, listen_extra: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:{{port}}\"\n{listen_extra}\n\n[upstream]\nurl = \"{upstream}\"\ntimeout_ms = 5000\n\n\
         [authn]\nissuer = \"{issuer}\"\naudience = [\"urn:invoiceguard:invoicing-api\"]\nleeway_s = 0\n\
         require_typ = \"at+jwt\"\nmfa_acr = [\"urn:invoiceguard:acr:mfa\"]\n"
    )
}

pub(crate) fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
        None => builder.body(Full::default()).unwrap(),
    }
}

/// Runs a command to its end: whether it succeeded, and its standard output and error.
pub(crate) fn run(command: &mut std::process::Command) -> (bool, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs this build's binary with `args` as the unprivileged `uid`:`gid` (supplementary `groups`,
/// none when empty) in `dir`, for at most `seconds`: its exit code (`None`: still running after
/// that, then stopped with SIGTERM) and output.
pub(crate) fn run_as(
    args: &[String],
    (uid, gid, groups): (u32, u32, &str),
    dir: &Path,
    seconds: u64,
) -> (Option<i32>, String) {
    let mut command = std::process::Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        command.arg("--clear-groups");
    } else {
        command.arg(format!("--groups={groups}"));
    }
    let mut child = command
        .arg("--")
        .arg(BINARY)
        .args(args)
        .current_dir(dir)
        .env("INVOICEGUARD_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    (
        code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A refusal as the client sees it: problem JSON carrying the response's request id.
pub(crate) fn assert_problem(reply: &Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    let problem = reply.json();
    assert_eq!(problem["status"], status);
    let request_id = reply.header("x-request-id");
    assert!(!request_id.is_empty());
    assert_eq!(problem["request_id"], request_id);
    problem
}
