//! The request body as the gateway reads it: at most `limits.max_body_bytes`, and never a pause
//! between two chunks longer than `listen.body_timeout_ms` (a client dripping its body slowly
//! holds nothing for long).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why the client's body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The body is longer than the limit.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    /// The client paused longer than the body timeout.
    #[error("the client sent no body data for {0} ms")]
    Timeout(u64),
    /// The client broke the body's framing or closed the connection.
    #[error("the request body could not be read: {0}")]
    Client(#[from] hyper::Error),
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

/// The client's body, held to a size and an idle timeout.
pub(crate) struct GuardedBody {
    inner: Incoming,
    read: u64,
    limit: u64,
    timeout: Duration,
    idle: Pin<Box<Sleep>>,
    /// Whether the idle timer runs: from the first read on (the gateway authenticates and
    /// decides before it reads the body).
    armed: bool,
}

impl GuardedBody {
    pub(crate) fn new(inner: Incoming, limit: u64, timeout: Duration) -> Self {
        Self {
            inner,
            read: 0,
            limit,
            timeout,
            idle: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if !this.armed {
            this.armed = true;
            let deadline = Instant::now() + this.timeout;
            this.idle.as_mut().reset(deadline);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                }
                let deadline = Instant::now() + this.timeout;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(BodyError::Client(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Timeout(
                    u64::try_from(this.timeout.as_millis()).unwrap_or(u64::MAX),
                )))),
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
