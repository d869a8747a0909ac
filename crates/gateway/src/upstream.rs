//! The upstream: an allowed request goes to it over a pooled connection, with the
//! verified identity added and every client-sent copy of it removed.

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use invoiceguard_authn::{Principal, PrincipalKind};

use crate::body::BodyError;
use crate::config::UpstreamConfig;
use crate::error::{GatewayError, RequestBody, error_chain};
use crate::foreign_headers::ForeignHeaders;
use crate::headers::{self, names};
use crate::tls;
use crate::upstream_pool::{Dialer, Pool, PooledBody, SendError};

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded in either direction.
/// `Transfer-Encoding` is among them: each hop frames the body itself (and HTTP/2 forbids it).
/// (Header names, not text: removing by name skips parsing it for every request.)
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What the gateway knows about the request that it passes on.
pub(crate) struct ForwardContext<'a> {
    pub(crate) principal: &'a Principal,
    pub(crate) request_id: &'a str,
    /// The trace the upstream request continues.
    pub(crate) trace: &'a crate::trace::TraceContext,
    pub(crate) client_ip: IpAddr,
    pub(crate) tls: bool,
}

/// The upstream and its connection pool.
pub(crate) struct Upstream {
    pool: std::sync::Arc<Pool>,
    authority: http::uri::Authority,
    /// The `Host` the upstream receives: its authority.
    host: HeaderValue,
    base_path: String,
    timeout: Duration,
    forward_authorization: bool,
    /// The API key header: a credential, never forwarded.
    api_key_header: HeaderName,
    /// Other proxies' identity and forwarding headers: never forwarded.
    foreign: ForeignHeaders,
}

impl Upstream {
    pub(crate) fn new(config: &UpstreamConfig, api_key_header: HeaderName) -> Result<Self, String> {
        let uri: Uri = config
            .url
            .parse()
            .map_err(|_| format!("upstream.url: `{}` is not a URL", config.url))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(format!(
                "upstream.url: `{}` needs a scheme and a host",
                config.url
            ));
        };
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector: HttpsConnector<HttpConnector> = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(
                config.ca_file.as_deref(),
                config
                    .client_cert
                    .as_ref()
                    .map(|c| (c.cert_file.as_path(), c.key_file.as_path())),
            )?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let target = Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("upstream.url: `{}`: {e}", config.url))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("upstream.url: `{}`: {e}", config.url))?;
        Ok(Self {
            pool: Pool::new(Dialer::Network(connector), target, Duration::from_secs(60)),
            host,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            timeout: Duration::from_millis(config.timeout_ms),
            forward_authorization: config.forward_authorization,
            api_key_header,
            foreign: ForeignHeaders::new(&config.remove_headers),
        })
    }

    /// The same upstream reached over in-memory pipes: each new connection's far end is handed to
    /// `serve` (the socket-free pipeline tests).
    #[cfg(test)]
    pub(crate) fn in_memory(
        mut self,
        serve: std::sync::Arc<dyn Fn(tokio::io::DuplexStream) + Send + Sync>,
    ) -> Self {
        let target = Uri::from_static("http://in-memory/");
        self.pool = Pool::new(Dialer::InMemory(serve), target, Duration::from_secs(60));
        self
    }

    /// Sends the request to the upstream at `path` (canonical, authorized) and the original query.
    pub(crate) async fn send(
        &self,
        request: Request<RequestBody>,
        path: &str,
        context: &ForwardContext<'_>,
    ) -> Result<Response<PooledBody>, GatewayError> {
        let (mut parts, body) = request.into_parts();
        let query = parts.uri.query();
        let mut path_and_query = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        path_and_query.push_str(&self.base_path);
        path_and_query.push_str(path);
        if let Some(query) = query {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        // Read before the URI is replaced: an HTTP/2 client's host is its `:authority`.
        let original_host = original_host(&parts);
        // Origin-form (`/path?query`): the connection is the upstream's own.
        parts.uri = Uri::builder()
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| GatewayError::Internal(format!("cannot build the upstream URI: {e}")))?;
        parts.version = Version::HTTP_11;
        upstream_headers(
            &mut parts.headers,
            context,
            original_host,
            self.forward_authorization,
            &self.foreign,
            &[&self.api_key_header, &names::BREAK_GLASS],
        )?;
        parts.headers.insert(header::HOST, self.host.clone());
        let sent = self.pool.send(Request::from_parts(parts, body));
        let mut response = match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => return Err(GatewayError::UpstreamTimeout),
            Ok(Err(SendError::Connect(cause))) => {
                return Err(GatewayError::UpstreamUnreachable(cause));
            }
            Ok(Err(SendError::Http(error))) => {
                return Err(match BodyError::find(&error) {
                    Some(BodyError::TooLarge(limit)) => GatewayError::PayloadTooLarge(*limit),
                    Some(BodyError::Timeout(ms)) => GatewayError::BodyTimeout(*ms),
                    Some(BodyError::Deadline(ms)) => GatewayError::BodyTooSlow(*ms),
                    Some(error @ BodyError::MethodOverride(_)) => {
                        GatewayError::BadRequest(error.to_string())
                    }
                    Some(BodyError::Client(cause)) => GatewayError::BadRequest(format!(
                        "the request body could not be read: {cause}"
                    )),
                    None => GatewayError::UpstreamUnreachable(error_chain(&error)),
                });
            }
            Ok(Ok(response)) => response,
        };
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }
}

impl Upstream {
    /// Asks the upstream about one resource (the enrich phase's lookup): `GET path` as the gateway
    /// itself. `Ok(None)` when the upstream says it does not exist.
    pub(crate) async fn lookup(
        &self,
        path: &str,
        request_id: &str,
    ) -> Result<Option<serde_json::Value>, String> {
        use http_body_util::{BodyExt, Empty, Limited};
        let uri = Uri::builder()
            .path_and_query(format!("{}{path}", self.base_path))
            .build()
            .map_err(|e| format!("cannot build the lookup URI: {e}"))?;
        let request = Request::get(uri)
            .header(header::HOST, self.authority.as_str())
            .header(header::ACCEPT, "application/json")
            .header(headers::SUBJECT, "invoiceguard")
            .header(headers::PRINCIPAL_TYPE, "gateway")
            .header(headers::REQUEST_ID, request_id)
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .map_err(|e| format!("cannot build the lookup request: {e}"))?;
        let fetch = async {
            let response = self.pool.send(request).await.map_err(|e| match e {
                SendError::Connect(cause) => cause,
                SendError::Http(error) => error_chain(&error),
            })?;
            let status = response.status();
            if status == http::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(format!("the upstream answered {status}"));
            }
            let body = Limited::new(response.into_body(), 1024 * 1024)
                .collect()
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?
                .to_bytes();
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| format!("the answer is not JSON: {e}"))
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| "the upstream did not answer in time".to_owned())?
    }
}

/// The host the client asked for: `Host` (HTTP/1.1) or the `:authority` (HTTP/2).
fn original_host(parts: &http::request::Parts) -> Option<HeaderValue> {
    parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// Rewrites the client's headers for the upstream: hop-by-hop and forgeable headers out (the
/// gateway's own, and every other proxy's `foreign` ones), the verified identity and forwarding
/// facts in. `also_remove` names other headers the upstream never sees: the API key header (a
/// credential) and the break-glass reason (for the audit trail).
pub(crate) fn upstream_headers(
    headers: &mut HeaderMap,
    context: &ForwardContext<'_>,
    original_host: Option<HeaderValue>,
    forward_authorization: bool,
    foreign: &ForeignHeaders,
    also_remove: &[&HeaderName],
) -> Result<(), GatewayError> {
    strip(headers, |name| {
        let text = name.as_str();
        text.starts_with(crate::headers::IDENTITY_PREFIX)
            || text == crate::headers::REQUEST_ID
            || foreign.is_foreign(name)
            || (!forward_authorization && name == header::AUTHORIZATION)
            || also_remove.contains(&name)
    });
    // The gateway's session and login cookies are its own credentials: never passed on.
    if headers.contains_key(header::COOKIE) {
        invoiceguard_session::strip_own_cookies(headers);
    }
    let principal = context.principal;
    // Room for what is added below, made once.
    headers.reserve(12);
    let mut set = |name: &HeaderName, value: &str| -> Result<(), GatewayError> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| GatewayError::Internal(format!("`{name}` cannot carry its value")))?;
        headers.append(name.clone(), value);
        Ok(())
    };
    set(&names::SUBJECT, &principal.id)?;
    set(&names::ROLES, &principal.roles.join(","))?;
    set(&names::SCOPES, &principal.scopes.join(" "))?;
    if let Some(client) = &principal.client_id {
        set(&names::CLIENT_ID, client)?;
    }
    set(&names::REQUEST_ID, context.request_id)?;
    set(&names::FORWARDED_FOR, &context.client_ip.to_string())?;
    let kind = match principal.kind {
        PrincipalKind::User => "user",
        PrincipalKind::ServiceAccount => "service_account",
    };
    let constant = [
        (&names::PRINCIPAL_TYPE, kind),
        (&names::MFA, if principal.mfa { "true" } else { "false" }),
        (
            &names::FORWARDED_PROTO,
            if context.tls { "https" } else { "http" },
        ),
    ];
    for (name, value) in constant {
        headers.append(name.clone(), HeaderValue::from_static(value));
    }
    if let Some(host) = original_host {
        headers.append(names::FORWARDED_HOST.clone(), host);
    }
    context.trace.inject(headers);
    Ok(())
}

/// Removes the hop-by-hop headers, and every header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, |_| false);
}

/// Removes the hop-by-hop headers, those the `Connection` header names and those `also` picks,
/// in one pass over the names: a request that carries none of them (most) costs no lookup.
fn strip(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let mut unwanted: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) || also(name))
        .cloned()
        .collect();
    if unwanted.contains(&header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        unwanted.extend(named);
    }
    for name in unwanted {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests;
