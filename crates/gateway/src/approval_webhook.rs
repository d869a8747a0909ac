//! The approvers' webhook (`[approvals] webhook`): each new export request is posted as JSON to
//! the configured URL (a chat or ticketing hook), in the background, so that the approvers learn
//! of it without watching the SIEM. A hook that fails is logged; the request stands either way
//! (the audit trail has it), and the requester still gets their answer at once.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use invoiceguard_telemetry::throttle;

use crate::approvals::ExportRequest;

/// The longest a hook may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where new export requests are posted.
#[derive(Clone)]
pub(crate) struct Webhook {
    url: Uri,
    auth_header_file: Option<PathBuf>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Webhook {
    pub(crate) fn new(url: &str, auth_header_file: Option<PathBuf>) -> Result<Self, String> {
        let url: Uri = url
            .parse()
            .map_err(|e| format!("approvals.webhook: `{url}`: {e}"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("approvals.webhook: the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            url,
            auth_header_file,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Posts a new export request, in the background.
    pub(crate) fn notify(&self, request: &ExportRequest) {
        let body = serde_json::json!({
            "event": "export_request",
            "id": request.id,
            "requester": request.requester,
            "export": request.export,
            "rows": request.rows,
            "reason": request.reason,
            "expires": request.expires,
            "approve": format!("POST /.invoiceguard/approvals/{}/approve", request.id),
        });
        let hook = self.clone();
        tokio::spawn(async move {
            if let Err(error) = hook.post(body.to_string()).await
                && let Some(held_back) = throttle("approval webhook failed")
            {
                tracing::warn!(%error, held_back, "the approvers' webhook was not reached");
            }
        });
    }

    async fn post(&self, body: String) -> Result<(), String> {
        let mut request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "invoiceguard-approvals");
        if let Some(file) = &self.auth_header_file {
            let secret = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
            request = request.header(header::AUTHORIZATION, secret.trim());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| format!("unreachable: {e}"))?;
        let status = response.status();
        let _ = tokio::time::timeout(TIMEOUT, response.into_body().collect()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}
