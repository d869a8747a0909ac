//! A small HTTP(S) client for the IdP's discovery document and JWKS.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

/// The largest IdP document accepted (discovery or JWKS).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Fetches JSON documents from the IdP.
#[derive(Clone)]
pub(crate) struct IdpClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    form_client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
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
        let client = Client::builder(TokioExecutor::new()).build(connector.clone());
        let form_client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            form_client,
            timeout,
        })
    }

    /// GETs `url` and parses the body as JSON of type `T`.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, String> {
        self.get_json_with_max_age(url)
            .await
            .map(|(value, _)| value)
    }

    /// GETs `url`, parses the body as JSON of type `T`, and reads `Cache-Control: max-age`.
    pub(crate) async fn get_json_with_max_age<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<(T, Option<Duration>), String> {
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
            read_json(url, response).await
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| format!("`{url}` did not answer within {:?}", self.timeout))?
    }

    /// POSTs a form with HTTP Basic client authentication and parses the JSON answer.
    pub(crate) async fn post_form_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        basic: (&str, &str),
        form: &[(&str, &str)],
    ) -> Result<T, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        // RFC 6749 section 2.3.1: client id and secret are form-encoded before Basic encoding.
        let credentials = base64_encode(&format!(
            "{}:{}",
            form_encode(basic.0),
            form_encode(basic.1)
        ));
        let request = http::Request::post(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::AUTHORIZATION, format!("Basic {credentials}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build a request for `{url}`: {e}"))?;
        let fetch = async {
            let response = self
                .form_client
                .request(request)
                .await
                .map_err(|e| format!("`{url}` did not answer: {e}"))?;
            read_json(url, response).await.map(|(value, _)| value)
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| format!("`{url}` did not answer within {:?}", self.timeout))?
    }
}

impl IdpClient {
    /// Sends `body` as JSON (or nothing) with `method`, a bearer token when given, and returns
    /// the status and the answer's JSON (`null` for an empty body). Any status is returned: the
    /// caller reads it (a stream API answers 201, 204, 404, 409).
    pub(crate) async fn send_json(
        &self,
        method: http::Method,
        url: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<(http::StatusCode, serde_json::Value), String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = request
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| format!("cannot build a request for `{url}`: {e}"))?;
        let fetch = async {
            let response = self
                .form_client
                .request(request)
                .await
                .map_err(|e| format!("`{url}` did not answer: {e}"))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| format!("cannot read `{url}`: {e}"))?
                .to_bytes();
            let value = if body.iter().all(u8::is_ascii_whitespace) {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| format!("`{url}` answered {status} with no JSON: {e}"))?
            };
            Ok((status, value))
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| format!("`{url}` did not answer within {:?}", self.timeout))?
    }
}

/// A successful answer's body as JSON (at most [`MAX_DOCUMENT_BYTES`]), and its
/// `Cache-Control: max-age`.
async fn read_json<T: serde::de::DeserializeOwned>(
    url: &str,
    response: http::Response<hyper::body::Incoming>,
) -> Result<(T, Option<Duration>), String> {
    let status = response.status();
    if !status.is_success() {
        return Err(format!("`{url}` answered {status}"));
    }
    let max_age = response
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(max_age);
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
        .collect()
        .await
        .map_err(|e| format!("cannot read `{url}`: {e}"))?
        .to_bytes();
    let value =
        serde_json::from_slice(&body).map_err(|e| format!("`{url}` is not valid JSON: {e}"))?;
    Ok((value, max_age))
}

/// `max-age=N` of one `Cache-Control` value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Standard base64 with padding.
fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_and_encodings() {
        assert_eq!(
            max_age("public, max-age=120"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(max_age("no-store"), None);
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(base64_encode("a:b"), "YTpi");
        assert_eq!(base64_encode("fo"), "Zm8=");
    }
}
