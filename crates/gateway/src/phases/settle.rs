//! The settle phase: what the upstream's answer proves — the id of a created invoice (its
//! creator is recorded) and the rows an export actually returned (the reservation is settled to
//! them). It changes the answer only to watermark an export whose route asks for it
//! (`watermark.rs`: marked and measured as it streams).

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::Frame;
use invoiceguard_policy::{Route, RowCount};
use invoiceguard_state::StateStore;
use invoiceguard_telemetry::throttle;
use serde_json::Value;

use crate::context::RequestContext;
use crate::error::{GatewayError, ResponseBody};
use crate::gateway::Gateway;
use crate::reservation::HeldExport;
use crate::upstream_pool::PooledBody;
use crate::watermark::{Format, Mark, OnEnd, Watermarked};

/// The largest answer read whole to find a created id or count rows.
const MAX_SETTLE_BYTES: usize = 16 * 1024 * 1024;

/// What settling found, for the audit event.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// Rows the export returned.
    pub(crate) export_rows: Option<u64>,
    /// The id of the resource the request created (a route with `record_creator`).
    pub(crate) created_id: Option<String>,
}

/// Settles the answer and returns it (read whole when it had to be); the rows exported go into
/// the context for the audit event.
pub(super) async fn phase(
    gateway: &Gateway,
    response: Response<PooledBody>,
    ctx: &mut RequestContext<'_>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let reservation = ctx.reservation.take();
    let (route, principal) = (ctx.route()?.route, ctx.principal()?);
    let (response, settled) =
        settle(response, route, &principal.id, reservation, &gateway.state).await;
    ctx.export_rows = settled.export_rows;
    let watermark = route.export.as_ref().and_then(|e| e.watermark.as_ref());
    let response = match watermark {
        // A HEAD answer has no body to mark.
        Some(spec) if response.status().is_success() && ctx.method != http::Method::HEAD => {
            watermarked(gateway, response, &spec.json_member, ctx)?
        }
        _ => response,
    };
    // The event names what was created: "who created which invoice" is answered from the trail.
    if let (Some(id), Some(route)) = (settled.created_id, ctx.route.as_mut()) {
        route.resource_id = id;
    }
    Ok(response)
}

/// An export answer marked as it streams (`watermark.rs`), with its export id in a header; when
/// it has streamed, its `delivered` event records what the client got.
fn watermarked(
    gateway: &Gateway,
    response: Response<ResponseBody>,
    json_member: &str,
    ctx: &RequestContext<'_>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let id = format!("EXP-{}", crate::trace::random_uuid());
    let principal = ctx.principal()?;
    let mark = Mark::new(&id, &principal.id, &ctx.time, &ctx.request_id, json_member);
    let (mut parts, body) = response.into_parts();
    let format = Format::of(&parts.headers);
    // The mark changes the length: the answer is streamed.
    parts.headers.remove(http::header::CONTENT_LENGTH);
    if let Ok(value) = http::HeaderValue::from_str(&id) {
        parts.headers.insert(crate::headers::EXPORT_ID, value);
    }
    let template = crate::audit_trail::delivered_template(ctx, parts.status.as_u16());
    let audit = gateway.audit.clone();
    let on_end: OnEnd = Box::new(move |delivery| {
        let event = crate::audit_trail::delivered_event(template, delivery);
        if let Err(error) = audit.record(event)
            && let Some(held_back) = throttle("export delivery not recorded")
        {
            tracing::error!(%error, held_back, "export delivery not recorded");
        }
    });
    Ok(Response::from_parts(
        parts,
        Watermarked::new(body, mark, format, on_end).boxed(),
    ))
}

/// Settles the answer; returns it (read whole when it had to be) and what was found.
async fn settle(
    response: Response<PooledBody>,
    route: &Route,
    creator: &str,
    reservation: Option<HeldExport>,
    state: &StateStore,
) -> (Response<ResponseBody>, Settled) {
    let success = response.status().is_success();
    let header_rows = match route.export.as_ref().map(|e| &e.rows) {
        Some(RowCount::Header(name)) => response
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok()),
        _ => None,
    };
    let needs_body = success
        && (route.record_creator.is_some()
            || matches!(
                route.export.as_ref().map(|e| &e.rows),
                Some(RowCount::JsonArray(_) | RowCount::Csv)
            ));
    let (response, body) = if needs_body {
        let (parts, body) = response.into_parts();
        let (whole, passed_on) = read_whole(body, MAX_SETTLE_BYTES).await;
        if whole.is_none()
            && let Some(held_back) = throttle("answer too large or broken to settle")
        {
            tracing::warn!(route = %route.template, held_back, "answer too large or broken to settle; passed on unchanged");
        }
        (Response::from_parts(parts, passed_on), whole)
    } else {
        (response.map(|body| body.boxed()), None)
    };

    let mut settled = Settled::default();
    if let (Some(pointer), Some(body)) = (route.record_creator.as_deref(), body.as_ref()) {
        match created_id(body, pointer) {
            Some(id) => {
                if let Err(error) = state.record_owner(&id, creator).await
                    && let Some(held_back) = throttle("creator not recorded")
                {
                    tracing::warn!(%error, invoice = %id, held_back, "creator not recorded; it will be looked up");
                }
                settled.created_id = Some(id);
            }
            None => tracing::warn!(route = %route.template, "created id not found in the answer"),
        }
    }

    if let Some(held) = reservation {
        let rows = match route.export.as_ref().map(|e| &e.rows) {
            _ if !success => Some(0),
            Some(RowCount::Header(_)) => header_rows,
            Some(RowCount::JsonArray(pointer)) => body.as_ref().and_then(|b| json_rows(b, pointer)),
            Some(RowCount::Csv) => body.as_ref().map(csv_rows),
            None => None,
        };
        // An answer that does not say how many rows it holds keeps the whole reservation.
        let rows = rows.unwrap_or(held.rows());
        if rows == 0 && !success {
            held.release().await;
        } else {
            held.settle(rows).await;
        }
        if success {
            settled.export_rows = Some(rows);
        }
    }
    (response, settled)
}

/// The body read whole when it ends within `limit` bytes, and the body to pass on. Past the limit,
/// or when the upstream breaks off, nothing is settled and the answer is passed on unchanged: what
/// was read, then the rest (or the upstream's error).
async fn read_whole<B>(mut body: B, limit: usize) -> (Option<Bytes>, ResponseBody)
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + Unpin + 'static,
{
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let failure = loop {
        match body.frame().await {
            None => {
                let whole: Bytes = chunks.concat().into();
                let passed_on = Full::new(whole.clone())
                    .map_err(|never| match never {})
                    .boxed();
                return (Some(whole), passed_on);
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    size += data.len();
                    chunks.push(data);
                    if size > limit {
                        break None;
                    }
                }
            }
            Some(Err(error)) => break Some(error),
        }
    };
    let head = futures_util::stream::iter(chunks.into_iter().map(|chunk| Ok(Frame::data(chunk))));
    let passed_on = match failure {
        Some(error) => StreamBody::new(futures_util::StreamExt::chain(
            head,
            futures_util::stream::iter([Err(error)]),
        ))
        .boxed(),
        None => {
            StreamBody::new(futures_util::StreamExt::chain(head, BodyStream::new(body))).boxed()
        }
    };
    (None, passed_on)
}

fn created_id(body: &Bytes, pointer: &str) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    match json.pointer(pointer)? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

fn json_rows(body: &Bytes, pointer: &str) -> Option<u64> {
    let json: Value = serde_json::from_slice(body).ok()?;
    json.pointer(pointer)?
        .as_array()
        .map(|rows| rows.len() as u64)
}

/// Non-empty lines after the header line.
fn csv_rows(body: &Bytes) -> u64 {
    body.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count()
        .saturating_sub(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static str]) -> ResponseBody {
        let frames = parts
            .iter()
            .map(|p| Ok::<_, hyper::Error>(Frame::data(Bytes::from_static(p.as_bytes()))));
        StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>())).boxed()
    }

    #[tokio::test]
    async fn small_answers_are_read_whole_and_large_ones_pass_unchanged() {
        let (whole, passed_on) = read_whole(chunked(&["{\"id\":", "\"INV-9\"}"]), 64).await;
        assert_eq!(whole.as_deref(), Some(&b"{\"id\":\"INV-9\"}"[..]));
        assert_eq!(
            passed_on.collect().await.unwrap().to_bytes(),
            "{\"id\":\"INV-9\"}"
        );

        let parts = ["0123456789", "abcdefghij", "KLMNOPQRST", "tail"];
        let (whole, passed_on) = read_whole(chunked(&parts), 15).await;
        assert!(whole.is_none(), "past the limit nothing is settled");
        assert_eq!(
            passed_on.collect().await.unwrap().to_bytes(),
            parts.concat(),
            "the answer is passed on unchanged"
        );
    }

    #[test]
    fn counting() {
        assert_eq!(csv_rows(&Bytes::from_static(b"id,amount\n1,2\n3,4\n\n")), 2);
        assert_eq!(csv_rows(&Bytes::from_static(b"")), 0);
        assert_eq!(
            json_rows(&Bytes::from_static(br#"{"rows":[1,2,3]}"#), "/rows"),
            Some(3)
        );
        assert_eq!(json_rows(&Bytes::from_static(br#"[1,2]"#), ""), Some(2));
        assert_eq!(
            created_id(&Bytes::from_static(br#"{"id":"INV-9"}"#), "/id").as_deref(),
            Some("INV-9")
        );
        assert_eq!(
            created_id(&Bytes::from_static(br#"{"id":42}"#), "/id").as_deref(),
            Some("42")
        );
    }
}
