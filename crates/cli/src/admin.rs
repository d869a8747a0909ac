//! Calls to a running gateway's admin listener (`revoke`, `grant`): its address and token from
//! the configuration file, one request, the answer's status and text.

use std::path::Path;

use anyhow::Context;
use http_body_util::BodyExt;
use invoiceguard_gateway::Config;

/// One request to the admin listener the configuration names, with its admin token and any
/// `extra` header; the status and body of the answer.
pub(crate) fn call(
    config: &Path,
    method: http::Method,
    path: &str,
    body: String,
    extra: Option<(&str, String)>,
) -> anyhow::Result<(http::StatusCode, String)> {
    let config = Config::load(config)?;
    let address = config
        .admin
        .address
        .context("the configuration has no `admin.address`: the admin listener is off")?;
    let token_file = config
        .admin
        .token_file
        .context("the configuration has no `admin.token_file`: the admin endpoints are disabled")?;
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read `{}`", token_file.display()))?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"))
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()),
        )
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
                .await
                .context("the admin listener did not answer within 10 s")?
                .with_context(|| format!("cannot reach the admin listener at {address}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

/// A path segment, percent-encoded.
pub(crate) fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
