//! The request body as the gateway reads it: at most `limits.max_body_bytes`, never a pause
//! between two chunks longer than `listen.body_timeout_ms`, and the whole body within
//! `listen.body_deadline_ms` of its first read (a client dripping its body slowly holds nothing
//! for long, and is told so with 408 before the upstream's timeout could blame the upstream).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::form_override::FormScan;

/// Why the client's body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The body is longer than the limit.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    /// The client paused longer than the body timeout.
    #[error("the client sent no body data for {0} ms")]
    Timeout(u64),
    /// A form body carries a method-override field (`form_override.rs`).
    #[error("form field `{0}` is not allowed")]
    MethodOverride(&'static str),
    /// The client did not send the whole body within the body deadline.
    #[error("the client did not send the whole body within {0} ms")]
    Deadline(u64),
    /// The client broke the body's framing or closed the connection.
    #[error("the request body could not be read: {0}")]
    Client(BoxError),
}

/// An error of any kind, as a body's errors are passed on.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body as the pipeline takes it: hyper's from a connection, or any other
/// (the socket-free tests drive the pipeline with bodies made in memory).
pub trait ClientBody:
    Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static
{
}

impl<B> ClientBody for B where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static
{
}

impl BodyError {
    /// The body error behind an error of the upstream client, if that is what it was.
    pub(crate) fn find<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Self> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(found) = error.downcast_ref::<Self>() {
                return Some(found);
            }
            current = error.source();
        }
        None
    }
}

/// How long the client may take to send a body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimes {
    /// The longest pause between two chunks.
    pub(crate) pause: Duration,
    /// The longest time for the whole body, from its first read.
    pub(crate) deadline: Duration,
}

/// The client's body, held to a size, an idle timeout and a deadline.
pub(crate) struct GuardedBody<B> {
    inner: B,
    read: u64,
    limit: u64,
    times: BodyTimes,
    idle: Pin<Box<Sleep>>,
    /// When the whole body must have arrived.
    deadline: Instant,
    /// Whether the timers run: from the first read on (the gateway authenticates and decides
    /// before it reads the body).
    armed: bool,
    /// A form body's method-override fields, looked for as it streams.
    form: Option<FormScan>,
}

impl<B> GuardedBody<B> {
    pub(crate) fn new(inner: B, limit: u64, times: BodyTimes, form: Option<FormScan>) -> Self {
        Self {
            inner,
            read: 0,
            limit,
            times,
            idle: Box::pin(tokio::time::sleep(times.pause)),
            deadline: Instant::now() + times.deadline,
            armed: false,
            form,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl<B> GuardedBody<B> {
    /// The next time to look: the end of the allowed pause, or the deadline if sooner.
    fn next_wake(&self, now: Instant) -> Instant {
        (now + self.times.pause).min(self.deadline)
    }
}

impl<B: ClientBody> Body for GuardedBody<B> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let now = Instant::now();
        if !this.armed {
            this.armed = true;
            this.deadline = now + this.times.deadline;
            let wake = this.next_wake(now);
            this.idle.as_mut().reset(wake);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                    if let Some(name) = this.form.as_mut().and_then(|form| form.bytes(data)) {
                        return Poll::Ready(Some(Err(BodyError::MethodOverride(name))));
                    }
                }
                if now >= this.deadline && !this.inner.is_end_stream() {
                    return Poll::Ready(Some(Err(BodyError::Deadline(millis(
                        this.times.deadline,
                    )))));
                }
                let wake = this.next_wake(now);
                this.idle.as_mut().reset(wake);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(BodyError::Client(error.into()))))
            }
            Poll::Ready(None) => match this.form.as_mut().and_then(FormScan::end) {
                Some(name) => Poll::Ready(Some(Err(BodyError::MethodOverride(name)))),
                None => Poll::Ready(None),
            },
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) if Instant::now() >= this.deadline => {
                    Poll::Ready(Some(Err(BodyError::Deadline(millis(this.times.deadline)))))
                }
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(BodyError::Timeout(millis(this.times.pause)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
