//! Four eyes on exports: a bulk export that a policy's `@approval("export")` forbid refuses is
//! recorded as an export request (403 `approval-required` with its id); another person whom the
//! policies allow (`export:approve_request`, never the requester, fresh MFA) approves or rejects
//! it at `/.invoiceguard/approvals/{id}` (`own/approvals.rs`); the requester's same export — the
//! same method, path, canonical query and body — then passes once, within the rows approved,
//! until the approval expires (`[approvals] ttl_s`). Requests and approvals are records in the
//! state store, so any replica serves any step, and an approval is spent by taking it (once).

use std::time::Duration;

use invoiceguard_state::{RecordKind, StateError, StateStore};
use serde::{Deserialize, Serialize};

use crate::context::RequestContext;
use crate::error::GatewayError;

/// The index of the export requests waiting for an approver.
const PENDING: &str = "approvals:pending";

/// The longest export definition kept as text (the body beyond it is named by its hash).
const MAX_DEFINITION_TEXT: usize = 512;

/// What defines an export: the method, path and canonical query (parameters sorted), and the
/// SHA-256 of its body. The same definition is the same export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportDefinition {
    /// For people: `POST /exports {"limit":800}`, the body cut to 512 bytes.
    pub(crate) text: String,
    /// SHA-256 over the method, path, canonical query and the body's SHA-256, hex.
    pub(crate) hash: String,
}

impl ExportDefinition {
    pub(crate) fn new(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        pairs.sort();
        let canonical_query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        let body_hash = sha256_hex(body);
        let hash =
            sha256_hex(format!("{method}\n{path}\n{canonical_query}\n{body_hash}").as_bytes());
        let mut text = format!("{method} {path}");
        if !canonical_query.is_empty() {
            text.push('?');
            text.push_str(&canonical_query);
        }
        if !body.is_empty() {
            let shown = String::from_utf8_lossy(body);
            let shown: String = shown
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_DEFINITION_TEXT)
                .collect();
            text.push(' ');
            text.push_str(&shown);
        }
        Self { text, hash }
    }
}

/// An export request, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExportRequest {
    pub(crate) id: String,
    /// `pending`, `approved`, `rejected` or `used`.
    pub(crate) status: String,
    pub(crate) requester: String,
    pub(crate) action: String,
    /// The export, for people.
    pub(crate) export: String,
    pub(crate) definition_hash: String,
    pub(crate) rows: u64,
    /// The reason the requester gave (`X-Export-Reason`), if any.
    pub(crate) reason: Option<String>,
    /// Unix seconds.
    pub(crate) created: u64,
    pub(crate) expires: u64,
    pub(crate) decided_by: Option<String>,
    pub(crate) decided_at: Option<u64>,
}

impl ExportRequest {
    /// The store's key of the approval a requester's export spends.
    fn grant_key(requester: &str, definition_hash: &str) -> String {
        format!(
            "grant-{}",
            sha256_hex(format!("{requester}\n{definition_hash}").as_bytes())
        )
    }
}

/// An approval found for a request's export, to be spent once the policies allow it.
#[derive(Debug, Clone)]
pub(crate) struct ApprovalUse {
    grant_key: String,
    pub(crate) request: ExportRequest,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

fn unavailable(error: StateError) -> GatewayError {
    GatewayError::FactUnavailable(format!("export approvals: {error}"))
}

use crate::trace::now_unix;

/// The store's view of export requests.
pub(crate) struct Approvals<'s> {
    pub(crate) state: &'s StateStore,
    pub(crate) ttl: Duration,
}

impl Approvals<'_> {
    /// The approval of this requester's export, when one is approved, unexpired and covers the
    /// rows asked: the request may then be decided with `export_approved`.
    pub(crate) async fn find(
        &self,
        requester: &str,
        definition: &ExportDefinition,
        rows: u64,
    ) -> Result<Option<ApprovalUse>, GatewayError> {
        let grant_key = ExportRequest::grant_key(requester, &definition.hash);
        let Some(id) = self
            .state
            .get_record(RecordKind::Approval, &grant_key)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let Some(request) = self.get(&id).await? else {
            return Ok(None);
        };
        let usable = request.status == "approved"
            && request.requester == requester
            && request.definition_hash == definition.hash
            && rows <= request.rows
            && now_unix() < request.expires;
        Ok(usable.then_some(ApprovalUse { grant_key, request }))
    }

    /// Spends an approval the policies accepted: taken from the store, so only one request (on
    /// any replica) passes with it. `false` when another took it first.
    pub(crate) async fn spend(&self, approval: &ApprovalUse) -> Result<bool, GatewayError> {
        let taken = self
            .state
            .take_record(RecordKind::Approval, &approval.grant_key)
            .await
            .map_err(unavailable)?;
        if taken.is_none() {
            return Ok(false);
        }
        let mut used = approval.request.clone();
        used.status = "used".to_owned();
        self.put(&used).await?;
        Ok(true)
    }

    /// Records an export request for the request in `ctx`, waiting for an approver.
    pub(crate) async fn request(
        &self,
        ctx: &RequestContext<'_>,
    ) -> Result<ExportRequest, GatewayError> {
        let (principal, definition) = match (&ctx.principal, &ctx.export_definition) {
            (Some(principal), Some(definition)) => (principal, definition),
            _ => {
                return Err(GatewayError::Internal(
                    "an approval was asked for a request that is no export".to_owned(),
                ));
            }
        };
        let now = now_unix();
        let request = ExportRequest {
            id: format!("AR-{}", &crate::trace::random_uuid()[..18]),
            status: "pending".to_owned(),
            requester: principal.id.clone(),
            action: ctx.route()?.route.action.clone(),
            export: definition.text.clone(),
            definition_hash: definition.hash.clone(),
            rows: ctx.export.rows_requested,
            reason: ctx.export_reason.clone(),
            created: now,
            expires: now + self.ttl.as_secs(),
            decided_by: None,
            decided_at: None,
        };
        self.put(&request).await?;
        self.state
            .index_add(PENDING, &request.id, self.ttl)
            .await
            .map_err(unavailable)?;
        Ok(request)
    }

    /// An export request by its id (while it is kept).
    pub(crate) async fn get(&self, id: &str) -> Result<Option<ExportRequest>, GatewayError> {
        let Some(text) = self
            .state
            .get_record(RecordKind::Approval, id)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_str(&text).ok())
    }

    /// The export requests waiting for an approver, oldest first.
    pub(crate) async fn pending(&self) -> Result<Vec<ExportRequest>, GatewayError> {
        let ids = self
            .state
            .index_members(PENDING)
            .await
            .map_err(unavailable)?;
        let mut pending = Vec::new();
        for id in ids {
            match self.get(&id).await? {
                Some(request) if request.status == "pending" && now_unix() < request.expires => {
                    pending.push(request);
                }
                _ => self
                    .state
                    .index_remove(PENDING, &id)
                    .await
                    .map_err(unavailable)?,
            }
        }
        pending.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(pending)
    }

    /// Records an approver's decision on a pending request; an approval becomes spendable by
    /// the requester's same export until the request expires.
    pub(crate) async fn decide(
        &self,
        mut request: ExportRequest,
        approver: &str,
        approved: bool,
    ) -> Result<ExportRequest, GatewayError> {
        let now = now_unix();
        request.status = if approved { "approved" } else { "rejected" }.to_owned();
        request.decided_by = Some(approver.to_owned());
        request.decided_at = Some(now);
        self.put(&request).await?;
        self.state
            .index_remove(PENDING, &request.id)
            .await
            .map_err(unavailable)?;
        if approved {
            let left = Duration::from_secs(request.expires.saturating_sub(now).max(1));
            self.state
                .put_record(
                    RecordKind::Approval,
                    &ExportRequest::grant_key(&request.requester, &request.definition_hash),
                    &request.id,
                    left,
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(request)
    }

    async fn put(&self, request: &ExportRequest) -> Result<(), GatewayError> {
        let text = serde_json::to_string(request)
            .map_err(|e| GatewayError::Internal(format!("an export request: {e}")))?;
        // Kept a day past its expiry, so that its story can still be told.
        let keep = Duration::from_secs(request.expires.saturating_sub(now_unix()) + 86_400);
        self.state
            .put_record(RecordKind::Approval, &request.id, &text, keep)
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exports_definition_is_its_method_path_sorted_query_and_body() {
        let a = ExportDefinition::new("GET", "/invoices/export", Some("limit=800&format=csv"), b"");
        let b = ExportDefinition::new("GET", "/invoices/export", Some("format=csv&limit=800"), b"");
        assert_eq!(a, b, "the order of the parameters does not matter");
        assert_eq!(a.text, "GET /invoices/export?format=csv&limit=800");
        let c = ExportDefinition::new("GET", "/invoices/export", Some("format=csv&limit=801"), b"");
        assert_ne!(a.hash, c.hash);
        let d = ExportDefinition::new("POST", "/exports", None, br#"{"limit":800}"#);
        let e = ExportDefinition::new("POST", "/exports", None, br#"{"limit":800,"x":1}"#);
        assert_ne!(d.hash, e.hash, "another body is another export");
        assert_eq!(d.text, r#"POST /exports {"limit":800}"#);
    }
}
