//! End to end through the real parts: the IdP (oidc-provider under node), the example invoicing
//! API, and the `invoiceguard` binary. Each test asserts what a user sees — status, problem body,
//! headers — and the audit event the request produced. One test binary; each module a concern.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
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

mod identity;
mod policy;
mod shared;
mod walk;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_invoiceguard");

/// The IdP, the example API and a gateway in front of it.
pub(crate) struct World {
    pub(crate) idp: Idp,
    pub(crate) upstream: Upstream,
    pub(crate) gateway: GatewayProcess,
}

impl World {
    pub(crate) async fn start() -> Self {
        let idp = Idp::start().await.unwrap();
        let upstream = Upstream::start().unwrap();
        let gateway = GatewayProcess::start(
            Path::new(BINARY),
            &sections(&idp.issuer, &upstream.url(), ""),
            false,
        )
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

/// A test CA and a certificate for `localhost` signed by it, made with the openssl command.
/// Returns (CA certificate, leaf certificate, leaf key).
pub(crate) fn certificates(
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let file = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=invoiceguard test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    std::fs::write(
        file("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    (file("ca.pem"), file("cert.pem"), file("key.pem"))
}

/// A client certificate for `dns_name`, signed by the test CA that `certificates` made in `dir`.
pub(crate) fn client_certificate(
    dir: &Path,
    dns_name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{dns_name}.pem")),
        dir.join(format!("{dns_name}.key")),
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let csr = format!("{dns_name}.csr");
    let ext = format!("{dns_name}.ext");
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={dns_name}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        &csr,
    ]);
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName=DNS:{dns_name}\nextendedKeyUsage=clientAuth\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}
