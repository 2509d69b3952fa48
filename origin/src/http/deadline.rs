//! A body that fails once the exchange's total timeout passes, so a stalled origin cannot
//! hold a viewer's stream open forever.

use crate::body::{Body, BoxError};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

pub struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    /// `deadline` is already armed; `timeout` is what error messages report.
    pub fn new(inner: Body, deadline: Pin<Box<Sleep>>, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline,
            timeout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("origin body not complete within the total timeout ({0:?})")]
pub struct TotalTimeout(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(TotalTimeout(self.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
