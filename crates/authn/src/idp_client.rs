//! A small HTTP(S) client for the IdP's discovery document and JWKS.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

/// The largest IdP document accepted (discovery or JWKS).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Fetches JSON documents from the IdP.
#[derive(Clone)]
pub(crate) struct IdpClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl IdpClient {
    pub(crate) fn new(timeout: Duration) -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, timeout })
    }

    /// GETs `url` and parses the body as JSON of type `T`.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("cannot build a request for `{url}`: {e}"))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("`{url}` did not answer: {e}"))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("`{url}` answered {status}"));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| format!("cannot read `{url}`: {e}"))?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| format!("`{url}` is not valid JSON: {e}"))
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| format!("`{url}` did not answer within {:?}", self.timeout))?
    }
}
