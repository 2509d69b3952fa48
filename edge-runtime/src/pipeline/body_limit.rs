//! The cap on a viewer's request body (`limits.max_request_body_bytes`). A declared
//! `Content-Length` over the cap is refused before anything is read; a body without one
//! (chunked, or HTTP/2 and HTTP/3 DATA frames) is counted as it streams and fails with
//! [`BodyTooLarge`] the moment it passes the cap, which aborts the origin request and
//! answers 413.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use origin::{Body, BoxError};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

#[derive(Debug, thiserror::Error)]
#[error("request body over {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// Wraps `body` so that it fails once more than `limit` bytes went through. The flag
/// turns true when it does, for readers that only see "the body failed" (a module
/// reading it first).
pub fn limit(body: Body, limit: u64) -> (Body, Arc<AtomicBool>) {
    let exceeded = Arc::new(AtomicBool::new(false));
    if HttpBody::is_end_stream(&body) {
        return (body, exceeded);
    }
    let body = Body::new(Limited {
        inner: body,
        left: limit,
        limit,
        exceeded: exceeded.clone(),
    });
    (body, exceeded)
}

struct Limited {
    inner: Body,
    left: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                if len > self.left {
                    self.exceeded.store(true, Ordering::Relaxed);
                    let limit = self.limit;
                    return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                }
                self.left -= len;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn chunks(sizes: &[usize]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = sizes
            .iter()
            .map(|&n| Ok(Frame::data(Bytes::from(vec![b'x'; n]))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_at_the_limit_passes_and_one_byte_more_fails() {
        let (at, exceeded) = limit(chunks(&[400, 600]), 1000);
        assert_eq!(at.collect().await.unwrap().to_bytes().len(), 1000);
        assert!(!exceeded.load(Ordering::Relaxed));
        let (over, exceeded) = limit(chunks(&[400, 601]), 1000);
        let error = over.collect().await.unwrap_err();
        assert!(error.downcast_ref::<BodyTooLarge>().is_some(), "{error}");
        assert!(exceeded.load(Ordering::Relaxed));
    }
}
