//! Watermarked exports: the answer of an export route with `watermark` passes through a body
//! that marks it as it streams — never read whole — and measures what the client got.
//!
//! - A CSV answer (`text/csv`) gets one more line at its end: `# invoiceguard export EXP-… by
//!   alice at … (request …)`. A trailing line leaves the header and every row as they were (a
//!   column would change every row); CSV readers skip it as a comment (`comment='#'`) or show it
//!   as one last cell.
//! - A JSON object answer gets a first member (`"_export": {"id", "by", "at", "request_id"}`):
//!   every other member stays where it was. A JSON array, or any other answer, is not marked.
//! - Always: the SHA-256 of the exact bytes delivered, and of the upstream's bytes (the same
//!   without the mark), and the byte count, go into the export's `delivered` audit event when the
//!   stream ends (or breaks off). `invoiceguard export trace FILE` finds a leaked file's export
//!   by its mark, or by either hash.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_lc_rs::digest;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use invoiceguard_audit::ExportDelivery;

/// How an answer is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// A trailing comment line.
    Csv,
    /// A first member of the top-level object.
    Json,
    /// Not marked: traced by its hash only.
    None,
}

impl Format {
    /// The format of an answer, by its headers: a compressed (or otherwise encoded) body is never
    /// marked — bytes inserted into gzip would break the file — only traced by its hash.
    pub(crate) fn of(headers: &http::HeaderMap) -> Self {
        let encoded = headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return Self::None;
        }
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let media = content_type
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "text/csv" => Self::Csv,
            "application/json" => Self::Json,
            m if m.ends_with("+json") => Self::Json,
            _ => Self::None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::None => "none",
        }
    }
}

/// The mark of one export.
#[derive(Debug, Clone)]
pub(crate) struct Mark {
    /// The export's id.
    pub(crate) id: String,
    /// The CSV trailer line, newline included.
    csv_line: Bytes,
    /// The JSON member, without a separating comma.
    json_member: Bytes,
}

impl Mark {
    /// The mark of export `id` by `subject` at `time`, for request `request_id`.
    pub(crate) fn new(id: &str, subject: &str, time: &str, request_id: &str, member: &str) -> Self {
        let csv_line =
            format!("# invoiceguard export {id} by {subject} at {time} (request {request_id})\n");
        let value =
            serde_json::json!({"id": id, "by": subject, "at": time, "request_id": request_id});
        let json_member = format!("{}:{value}", serde_json::Value::from(member));
        Self {
            id: id.to_owned(),
            csv_line: Bytes::from(csv_line),
            json_member: Bytes::from(json_member),
        }
    }
}

/// Where a JSON answer's mark goes, as its bytes pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonState {
    /// Before the first non-space byte.
    Start,
    /// After the top-level object's `{`: the mark goes before the first member (with a comma)
    /// or before `}` (without).
    InObject,
    /// Marked, or not markable (an array): the rest passes.
    Done,
}

/// What is told when the stream ends: the delivery, once.
pub(crate) type OnEnd = Box<dyn FnOnce(ExportDelivery) + Send + Sync>;

/// An export answer marked and measured as it streams.
pub(crate) struct Watermarked<B> {
    inner: B,
    mark: Mark,
    format: Format,
    json: JsonState,
    /// Whether the mark was written (a JSON array is not marked).
    marked: bool,
    /// The last byte delivered, to end a CSV with a line break before its trailer.
    last_byte: Option<u8>,
    /// The CSV trailer, once sent.
    trailer: Option<Bytes>,
    delivered: digest::Context,
    unmarked: digest::Context,
    bytes: u64,
    on_end: Option<OnEnd>,
}

impl<B> Watermarked<B> {
    pub(crate) fn new(inner: B, mark: Mark, format: Format, on_end: OnEnd) -> Self {
        Self {
            inner,
            mark,
            format,
            json: JsonState::Start,
            marked: false,
            last_byte: None,
            trailer: None,
            delivered: digest::Context::new(&digest::SHA256),
            unmarked: digest::Context::new(&digest::SHA256),
            bytes: 0,
            on_end: Some(on_end),
        }
    }

    /// The bytes to deliver for `data` from the upstream.
    fn mark_json(&mut self, data: Bytes) -> Bytes {
        if self.json == JsonState::Done {
            return data;
        }
        let mut out: Option<BytesMut> = None;
        let mut from = 0;
        for (at, byte) in data.iter().enumerate() {
            if byte.is_ascii_whitespace() {
                continue;
            }
            match self.json {
                JsonState::Start if *byte == b'{' => self.json = JsonState::InObject,
                JsonState::Start => {
                    // An array or a scalar: no member to add.
                    self.json = JsonState::Done;
                    break;
                }
                JsonState::InObject => {
                    let buffer =
                        out.get_or_insert_with(|| BytesMut::with_capacity(data.len() + 128));
                    buffer.extend_from_slice(&data[from..at]);
                    buffer.extend_from_slice(&self.mark.json_member);
                    if *byte != b'}' {
                        buffer.extend_from_slice(b",");
                    }
                    from = at;
                    self.json = JsonState::Done;
                    self.marked = true;
                    break;
                }
                JsonState::Done => break,
            }
        }
        match out {
            Some(mut buffer) => {
                buffer.extend_from_slice(&data[from..]);
                buffer.freeze()
            }
            None => data,
        }
    }

    /// Counts bytes delivered. Only a JSON answer is hashed a second time as delivered: a CSV's
    /// delivered bytes are the upstream's and then the trailer, hashed at the end from the
    /// upstream's hash (and an unmarked answer's are the upstream's).
    fn deliver(&mut self, data: &Bytes) {
        if self.format == Format::Json {
            self.delivered.update(data);
        }
        self.bytes += data.len() as u64;
        if let Some(last) = data.last() {
            self.last_byte = Some(*last);
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(on_end) = self.on_end.take() {
            let hex = |context: &digest::Context| hex::encode(context.clone().finish());
            let delivered = match (self.format, &self.trailer) {
                (Format::Json, _) => hex(&self.delivered),
                (_, Some(trailer)) => {
                    let mut with_trailer = self.unmarked.clone();
                    with_trailer.update(trailer);
                    hex(&with_trailer)
                }
                (_, None) => hex(&self.unmarked),
            };
            on_end(ExportDelivery {
                id: self.mark.id.clone(),
                watermark: if self.marked {
                    self.format.name()
                } else {
                    "none"
                },
                sha256: delivered,
                sha256_unmarked: hex(&self.unmarked),
                bytes: self.bytes,
                complete,
            });
        }
    }
}

impl<B> Body for Watermarked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    this.unmarked.update(&data);
                    let data = match this.format {
                        Format::Json => this.mark_json(data),
                        Format::Csv | Format::None => data,
                    };
                    this.deliver(&data);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(error))) => {
                this.end(false);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                if this.format == Format::Csv && this.trailer.is_none() {
                    this.marked = true;
                    let mut trailer = BytesMut::with_capacity(this.mark.csv_line.len() + 1);
                    if this.last_byte.is_some_and(|b| b != b'\n') {
                        trailer.extend_from_slice(b"\n");
                    }
                    trailer.extend_from_slice(&this.mark.csv_line);
                    let trailer = trailer.freeze();
                    this.deliver(&trailer);
                    this.trailer = Some(trailer.clone());
                    return Poll::Ready(Some(Ok(Frame::data(trailer))));
                }
                this.end(true);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.on_end.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // The mark changes the length: unknown, streamed.
        SizeHint::default()
    }
}

impl<B> Drop for Watermarked<B> {
    fn drop(&mut self) {
        // The client went away mid-stream: what it got is still recorded.
        self.end(false);
    }
}

/// The export id a file's watermark names, if it has one: a CSV's trailing comment line, or a
/// JSON object's member `{"id": "EXP-…", "by": …}`.
pub fn find_mark(file: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(file);
    if let Some(line) = text
        .lines()
        .rev()
        .find(|line| line.starts_with("# invoiceguard export "))
    {
        return line
            .trim_start_matches("# invoiceguard export ")
            .split_whitespace()
            .next()
            .map(str::to_owned);
    }
    let json: serde_json::Value = serde_json::from_slice(file).ok()?;
    json.as_object()?.values().find_map(|value| {
        let id = value.get("id")?.as_str()?;
        (id.starts_with("EXP-") && value.get("by").is_some()).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn mark() -> Mark {
        Mark::new("EXP-1", "carol", "2026-12-06T10:00:00Z", "r-1", "_export")
    }

    /// The answer `chunks` marked as `format`: what the client gets, and the delivery told.
    async fn run(chunks: &[&str], format: Format) -> (String, ExportDelivery) {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from(c.to_string()))))
            .collect();
        let inner = StreamBody::new(futures_util::stream::iter(frames));
        let told = Arc::new(Mutex::new(None));
        let keep = told.clone();
        let body = Watermarked::new(
            inner,
            mark(),
            format,
            Box::new(move |delivery| *keep.lock().unwrap() = Some(delivery)),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        let delivery = told.lock().unwrap().take().unwrap();
        (String::from_utf8(bytes.to_vec()).unwrap(), delivery)
    }

    fn sha(text: &str) -> String {
        hex::encode(digest::digest(&digest::SHA256, text.as_bytes()))
    }

    #[tokio::test]
    async fn a_csv_gets_a_trailing_line_and_both_hashes() {
        let (out, delivery) = run(&["id,amount\n", "INV-1,10\nINV-2", ",20"], Format::Csv).await;
        assert_eq!(
            out,
            "id,amount\nINV-1,10\nINV-2,20\n# invoiceguard export EXP-1 by carol at 2026-12-06T10:00:00Z (request r-1)\n"
        );
        assert_eq!(delivery.sha256, sha(&out));
        assert_eq!(
            delivery.sha256_unmarked,
            sha("id,amount\nINV-1,10\nINV-2,20")
        );
        assert_eq!(delivery.bytes, out.len() as u64);
        assert_eq!((delivery.watermark, delivery.complete), ("csv", true));
        assert_eq!(find_mark(out.as_bytes()).as_deref(), Some("EXP-1"));
    }

    #[tokio::test]
    async fn a_json_object_gets_a_first_member_wherever_the_chunks_split() {
        let whole = r#" {"rows": [1, 2], "count": 2}"#;
        for split in 0..whole.len() {
            let (out, delivery) = run(&[&whole[..split], &whole[split..]], Format::Json).await;
            let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(parsed["_export"]["id"], "EXP-1", "split at {split}: {out}");
            assert_eq!(parsed["rows"], serde_json::json!([1, 2]));
            assert_eq!(delivery.sha256_unmarked, sha(whole));
            assert_eq!(delivery.watermark, "json");
            assert_eq!(find_mark(out.as_bytes()).as_deref(), Some("EXP-1"));
        }
        let (out, _) = run(&["{ }"], Format::Json).await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["_export"]["by"],
            "carol"
        );
    }

    #[tokio::test]
    async fn an_array_or_another_type_is_traced_by_its_hash_only() {
        let (out, delivery) = run(&["[1,2]"], Format::Json).await;
        assert_eq!(out, "[1,2]");
        assert_eq!(
            (delivery.watermark, delivery.sha256.clone()),
            ("none", sha("[1,2]"))
        );
        assert_eq!(delivery.sha256, delivery.sha256_unmarked);
        let (out, delivery) = run(&["%PDF-1.7"], Format::None).await;
        assert_eq!(out, "%PDF-1.7");
        assert_eq!(delivery.watermark, "none");
        assert_eq!(find_mark(out.as_bytes()), None);
    }

    #[test]
    fn formats_follow_the_content_type() {
        let of = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = http::HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, http::HeaderValue::from_static(value));
            }
            Format::of(&headers)
        };
        assert_eq!(
            of(&[("content-type", "text/csv; charset=utf-8")]),
            Format::Csv
        );
        assert_eq!(of(&[("content-type", "application/json")]), Format::Json);
        assert_eq!(
            of(&[("content-type", "application/problem+json")]),
            Format::Json
        );
        assert_eq!(of(&[]), Format::None);
        // A compressed body is traced by its hash, never marked.
        for coding in ["gzip", "br", "deflate"] {
            assert_eq!(
                of(&[("content-type", "text/csv"), ("content-encoding", coding)]),
                Format::None,
                "{coding}"
            );
        }
        assert_eq!(
            of(&[
                ("content-type", "text/csv"),
                ("content-encoding", "identity")
            ]),
            Format::Csv
        );
    }
}
