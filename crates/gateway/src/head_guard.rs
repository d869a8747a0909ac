//! The accept phase's look at HTTP/1.1 request heads before hyper parses them, for two things
//! hyper accepts and a front proxy may read differently: a bare LF or bare CR as a line end
//! (RFC 9112 section 2.2), and a head with both `Content-Length` and `Transfer-Encoding`
//! (RFC 9112 section 6.3, which lets a server refuse it; hyper drops the length and goes on).
//!
//! The guard follows the client's byte stream: heads byte by byte, bodies by their framing
//! (`Content-Length` bytes skipped, chunked bodies by their chunk sizes), so that a body's bytes are
//! never mistaken for a head. It parses nothing for hyper: when a head must be refused, it turns
//! the offending byte, which hyper has not yet seen, into a NUL, ends the stream right after it
//! with an empty line (hyper parses a head only once it sees one), and then with the end of the
//! connection; hyper's own parser then refuses the head (400, connection closed, audited as
//! malformed), and the guard says why. An HTTP/2 connection (its preface) is let through
//! untouched.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why a head was refused; shared with the code that records the connection's end.
pub(crate) type Verdict = Arc<OnceLock<&'static str>>;

/// What follows a refused head: an empty line, so that hyper parses (and refuses) it.
const REFUSED_END: &[u8] = b"\r\n\r\n";

/// A client connection whose HTTP/1.1 heads are checked as they are read.
pub(crate) struct HeadGuard<S> {
    inner: S,
    scan: Scan,
    verdict: Verdict,
    /// After a refusal: how much of `REFUSED_END` has been given to hyper (then the end).
    refused: Option<usize>,
}

impl<S> HeadGuard<S> {
    /// Guards `inner`; `verdict` receives the reason when a head is refused.
    pub(crate) fn new(inner: S, verdict: Verdict) -> Self {
        Self {
            inner,
            scan: Scan::default(),
            verdict,
            refused: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(given) = &mut this.refused {
            // The refused head's empty line, then the end of the stream.
            let rest = &REFUSED_END[*given..];
            let take = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..take]);
            *given += take;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled
            && let Some((why, at)) = this.scan.bytes(&mut buf.filled_mut()[before..])
        {
            let _ = this.verdict.set(why);
            // Nothing after the refusing byte reaches hyper.
            buf.set_filled(before + at + 1);
            this.refused = Some(0);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where the client's byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a request head.
    Head,
    /// In a body of known length: this many bytes left.
    Body(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// Not HTTP/1.1 heads (HTTP/2), or after a refusal: nothing more is looked at.
    Through,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The chunk-size line; the size so far, and whether its digits have ended (extensions).
    Size(u64, bool),
    /// Chunk data: this many bytes left, then its CRLF (2 bytes).
    Data(u64),
    /// The trailer section; whether the current line is empty so far.
    Trailer(bool),
}

/// The names whose presence decides a body's framing.
const CONTENT_LENGTH: &[u8] = b"content-length";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";

/// The scanner's state.
#[derive(Debug)]
struct Scan {
    state: State,
    /// Bytes of the connection matched against the HTTP/2 preface so far (`usize::MAX` once it
    /// cannot be one).
    preface: usize,
    /// The previous byte of a head was CR.
    after_cr: bool,
    /// Whether the head's request line has been seen (empty lines before it are skipped).
    request_line: bool,
    /// Bytes of the current line.
    line_len: usize,
    /// The current line's name, lowercase, while it could still be a framing header.
    name: [u8; 17],
    /// Whether the current line is past its name's colon, and which header it is.
    in_value: Option<Framing>,
    /// The head's `Content-Length` (its digits), if any.
    content_length: Option<u64>,
    /// Whether the head has a `Transfer-Encoding`.
    transfer_encoding: bool,
}

/// A framing header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Encoding,
    Other,
}

impl Default for Scan {
    fn default() -> Self {
        Self {
            state: State::Head,
            preface: 0,
            after_cr: false,
            request_line: false,
            line_len: 0,
            name: [0; 17],
            in_value: None,
            content_length: None,
            transfer_encoding: false,
        }
    }
}

impl Scan {
    /// Follows `bytes`, just read from the client; returns why a head is refused and where, after
    /// turning the byte that refuses it into a NUL.
    fn bytes(&mut self, bytes: &mut [u8]) -> Option<(&'static str, usize)> {
        if self.preface != usize::MAX && self.state != State::Through {
            let matched = bytes
                .iter()
                .zip(&H2_PREFACE[self.preface.min(H2_PREFACE.len())..])
                .take_while(|(a, b)| a == b)
                .count();
            if matched == bytes.len().min(H2_PREFACE.len() - self.preface) {
                self.preface += matched;
                if self.preface == H2_PREFACE.len() {
                    self.state = State::Through;
                    return None;
                }
            } else {
                self.preface = usize::MAX;
            }
        }
        let mut at = 0;
        while at < bytes.len() {
            match self.state {
                State::Through => return None,
                State::Body(left) => {
                    let take = left.min((bytes.len() - at) as u64);
                    at += take as usize;
                    self.state = if take == left {
                        State::Head
                    } else {
                        State::Body(left - take)
                    };
                }
                State::Chunked(chunk) => {
                    at = self.chunk(chunk, bytes, at);
                }
                State::Head if self.skippable() => {
                    // The rest of a line that no longer matters (the request line, or a header
                    // that is not `Content-Length`, past its name): up to its CR or LF at once.
                    let rest = &bytes[at..];
                    let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    if run == 0 {
                        if let Some(why) = self.head_byte(bytes[at]) {
                            bytes[at] = 0;
                            self.state = State::Through;
                            return Some((why, at));
                        }
                        at += 1;
                    } else {
                        self.line_len += run;
                        at += run;
                    }
                }
                State::Head => {
                    if let Some(why) = self.head_byte(bytes[at]) {
                        bytes[at] = 0;
                        self.state = State::Through;
                        return Some((why, at));
                    }
                    at += 1;
                }
            }
        }
        None
    }

    /// Whether the bytes up to the line's end can be skipped: in the request line, or in a header
    /// line whose name is known and whose value is not needed (only `Content-Length`'s is).
    fn skippable(&self) -> bool {
        !self.after_cr
            && (!self.request_line
                || matches!(self.in_value, Some(Framing::Other | Framing::Encoding)))
    }

    /// One byte of a head.
    fn head_byte(&mut self, byte: u8) -> Option<&'static str> {
        let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if !after_cr => Some("a bare LF ends a line of the request head"),
            b'\n' => {
                // The line held only its CR: the end of the head, or an empty line before it.
                let empty = self.line_len == 1;
                self.line_len = 0;
                self.in_value = None;
                if !empty {
                    self.request_line = true;
                    return None;
                }
                if !self.request_line {
                    return None;
                }
                self.end_of_head()
            }
            _ if after_cr => Some("a bare CR in the request head"),
            _ => {
                self.line_len += 1;
                if self.request_line && byte != b'\r' {
                    self.header_byte(byte);
                }
                None
            }
        }
    }

    /// One byte of a header line (not its CR).
    fn header_byte(&mut self, byte: u8) {
        let position = self.line_len - 1;
        match self.in_value {
            None if byte == b':' => {
                let name = &self.name[..position.min(self.name.len())];
                let framing = if position == CONTENT_LENGTH.len() && name == CONTENT_LENGTH {
                    self.content_length = Some(0);
                    Framing::Length
                } else if position == TRANSFER_ENCODING.len() && name == TRANSFER_ENCODING {
                    self.transfer_encoding = true;
                    Framing::Encoding
                } else {
                    Framing::Other
                };
                self.in_value = Some(framing);
            }
            None => match self.name.get_mut(position) {
                Some(slot) => *slot = byte.to_ascii_lowercase(),
                // Longer than either framing name: the rest of the line does not matter.
                None => self.in_value = Some(Framing::Other),
            },
            Some(Framing::Length) if byte.is_ascii_digit() => {
                let length = self.content_length.unwrap_or(0);
                self.content_length = Some(
                    length
                        .saturating_mul(10)
                        .saturating_add(u64::from(byte - b'0')),
                );
            }
            Some(_) => {}
        }
    }

    /// The head ended: refuse it, or follow its body.
    fn end_of_head(&mut self) -> Option<&'static str> {
        let (length, chunked) = (self.content_length.take(), self.transfer_encoding);
        self.transfer_encoding = false;
        self.request_line = false;
        if chunked && length.is_some() {
            return Some("both content-length and transfer-encoding");
        }
        self.state = match (chunked, length) {
            (true, _) => State::Chunked(Chunk::Size(0, false)),
            (false, Some(length)) if length > 0 => State::Body(length),
            _ => State::Head,
        };
        None
    }

    /// Follows a chunked body from `bytes[at]`; returns where it stopped.
    fn chunk(&mut self, chunk: Chunk, bytes: &[u8], mut at: usize) -> usize {
        match chunk {
            Chunk::Size(size, digits_ended) => {
                let byte = bytes[at];
                at += 1;
                self.state = State::Chunked(match (byte as char).to_digit(16) {
                    _ if byte == b'\n' && size == 0 => Chunk::Trailer(true),
                    _ if byte == b'\n' => Chunk::Data(size.saturating_add(2)),
                    Some(digit) if !digits_ended => Chunk::Size(
                        size.saturating_mul(16).saturating_add(u64::from(digit)),
                        false,
                    ),
                    _ => Chunk::Size(size, true),
                });
            }
            Chunk::Data(left) => {
                let take = left.min((bytes.len() - at) as u64);
                at += take as usize;
                self.state = State::Chunked(if take == left {
                    Chunk::Size(0, false)
                } else {
                    Chunk::Data(left - take)
                });
            }
            Chunk::Trailer(empty) => {
                let byte = bytes[at];
                at += 1;
                self.state = match byte {
                    b'\n' if empty => State::Head,
                    b'\n' => State::Chunked(Chunk::Trailer(true)),
                    b'\r' => State::Chunked(Chunk::Trailer(empty)),
                    _ => State::Chunked(Chunk::Trailer(false)),
                };
            }
        }
        at
    }
}

#[cfg(any(test, feature = "fuzzing"))]
/// Runs the scanner over `stream` cut into `pieces` reads; returns the refusal and the bytes as
/// hyper would get them.
pub(crate) fn scan_in_pieces(stream: &[u8], piece: usize) -> (Option<&'static str>, Vec<u8>) {
    let mut scan = Scan::default();
    let mut out = stream.to_vec();
    let mut verdict = None;
    for part in out.chunks_mut(piece.max(1)) {
        if let Some((why, _)) = scan.bytes(part) {
            verdict = Some(why);
            break;
        }
    }
    (verdict, out)
}

#[cfg(test)]
mod tests;
