//! Request coalescing: concurrent misses for one key share one origin fetch (a "fill").
//! The fill runs as its own task, so it completes (and fills the cache) even if the viewer
//! who started it goes away. Every waiter streams the body as it arrives, at its own pace,
//! from the chunks the fill has received so far; a failed fill ends every waiter's stream
//! with an error, never a hang.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Frame, SizeHint};
use origin::BoxError;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::watch;

/// What a fill learned from the origin, once it knows.
#[derive(Debug)]
pub enum Head {
    /// The response can be shared with every waiter: its head, and a body to stream.
    Shared(SharedHead),
    /// The response is specific to the viewer who asked (`private`, `Set-Cookie`...):
    /// every other waiter must fetch its own.
    NotShared,
    /// No response: the origin failed. Waiters answer with `status` (502/504), or with a
    /// stale copy where `stale-if-error` allows.
    Failed { status: StatusCode, reason: String },
}

#[derive(Debug)]
pub struct SharedHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Total body length, when known in advance.
    pub length: Option<u64>,
    /// `Vary` field names and the leader's values for them: a waiter whose values differ
    /// cannot use this response.
    pub vary_names: Vec<String>,
    pub vary_values: Vec<Option<String>>,
    /// How the response came to be, for `X-Cache` and metrics.
    pub outcome: FillOutcome,
    /// The upstream that answered and its time to first byte, for the access log.
    pub upstream: Option<Arc<str>>,
    pub origin_time: Option<std::time::Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillOutcome {
    /// A full response from the origin.
    Fetched,
    /// The origin said 304: the stored body is still current.
    Revalidated,
}

#[derive(Default)]
struct Chunks {
    chunks: Vec<Bytes>,
    done: bool,
    error: Option<Arc<str>>,
    wakers: Vec<Waker>,
}

/// One coalesced origin fetch.
pub struct Fill {
    head: watch::Sender<Option<Arc<Head>>>,
    body: Mutex<Chunks>,
    /// Set by a purge of this key while the fill runs: its result must not be stored.
    purged: std::sync::atomic::AtomicBool,
}

impl Fill {
    fn new() -> Arc<Fill> {
        Arc::new(Fill {
            head: watch::channel(None).0,
            body: Mutex::new(Chunks::default()),
            purged: Default::default(),
        })
    }

    /// Waits until the fill knows what the origin answered.
    pub async fn head(&self) -> Arc<Head> {
        let mut rx = self.head.subscribe();
        let head = rx.wait_for(Option::is_some).await.map(|h| h.clone());
        match head {
            Ok(Some(head)) => head,
            // Unreachable while the Fill lives (it owns the sender); kept total.
            _ => Arc::new(Head::Failed {
                status: StatusCode::BAD_GATEWAY,
                reason: "origin fetch ended without a response".into(),
            }),
        }
    }

    /// A body that streams this fill's chunks, skipping `skip` bytes and stopping after
    /// `take` (for ranges).
    pub fn reader(self: &Arc<Self>, skip: u64, take: Option<u64>) -> FillBody {
        FillBody {
            fill: self.clone(),
            next: 0,
            skip,
            take,
        }
    }
}

impl Fill {
    pub fn purged(&self) -> bool {
        self.purged.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The chunks received so far (reference-counted clones).
    pub fn chunks(&self) -> Vec<Bytes> {
        lock(&self.body).chunks.clone()
    }
}

/// The fill task's handle: the only one that writes. Dropping it before the fill is
/// complete (a panic, cancellation at shutdown) fails the fill, so waiters never hang.
pub struct FillWriter {
    fill: Arc<Fill>,
}

impl FillWriter {
    pub fn set_head(&self, head: Head) {
        self.fill.head.send_replace(Some(Arc::new(head)));
    }

    pub fn push(&self, chunk: Bytes) {
        let mut body = lock(&self.fill.body);
        body.chunks.push(chunk);
        wake_all(&mut body.wakers);
    }

    pub fn finish(&self) {
        let mut body = lock(&self.fill.body);
        body.done = true;
        wake_all(&mut body.wakers);
    }

    pub fn fail(&self, reason: &str) {
        let mut body = lock(&self.fill.body);
        body.error = Some(Arc::from(reason));
        wake_all(&mut body.wakers);
    }

    pub fn fill(&self) -> &Arc<Fill> {
        &self.fill
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        if self.fill.head.borrow().is_none() {
            self.set_head(Head::Failed {
                status: StatusCode::BAD_GATEWAY,
                reason: "origin fetch abandoned".into(),
            });
        }
        let mut body = lock(&self.fill.body);
        if !body.done && body.error.is_none() {
            body.error = Some(Arc::from("origin fetch abandoned"));
        }
        wake_all(&mut body.wakers);
    }
}

fn wake_all(wakers: &mut Vec<Waker>) {
    for waker in wakers.drain(..) {
        waker.wake();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The body of a coalesced response, as one waiter reads it.
pub struct FillBody {
    fill: Arc<Fill>,
    next: usize,
    skip: u64,
    take: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("origin response failed mid-body: {0}")]
pub struct FillFailed(Arc<str>);

impl http_body::Body for FillBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.take == Some(0) {
                return Poll::Ready(None);
            }
            let next = self.next;
            let chunk = {
                let mut body = lock(&self.fill.body);
                if let Some(chunk) = body.chunks.get(next) {
                    chunk.clone()
                } else if let Some(error) = &body.error {
                    return Poll::Ready(Some(Err(Box::new(FillFailed(error.clone())))));
                } else if body.done {
                    return Poll::Ready(None);
                } else {
                    if !body.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        body.wakers.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            };
            self.next += 1;
            let mut chunk = chunk;
            let len = chunk.len() as u64;
            if self.skip >= len {
                self.skip -= len;
                continue;
            }
            if self.skip > 0 {
                chunk = chunk.slice(self.skip as usize..);
                self.skip = 0;
            }
            if let Some(take) = self.take {
                if (chunk.len() as u64) > take {
                    chunk = chunk.slice(..take as usize);
                }
                self.take = Some(take - chunk.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.take == Some(0) {
            return true;
        }
        let body = lock(&self.fill.body);
        body.done && self.next >= body.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        match self.take {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Fills in progress, by cache key.
#[derive(Default)]
pub struct Inflights {
    map: Mutex<HashMap<String, Arc<Fill>>>,
}

pub enum Role {
    /// This request must start the fill.
    Leader(Arc<Fill>, FillWriter),
    /// A fill is already running; wait for it.
    Follower(Arc<Fill>),
}

impl Inflights {
    pub fn join(&self, key: &str) -> Role {
        let mut map = lock(&self.map);
        if let Some(fill) = map.get(key) {
            return Role::Follower(fill.clone());
        }
        let fill = Fill::new();
        map.insert(key.to_owned(), fill.clone());
        let writer = FillWriter { fill: fill.clone() };
        Role::Leader(fill, writer)
    }

    /// New requests stop joining `fill` (it has its head or has failed); those that
    /// joined keep reading it.
    pub fn close(&self, key: &str, fill: &Arc<Fill>) {
        let mut map = lock(&self.map);
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(key);
        }
    }

    /// Marks the fills whose key matches so they do not store what they fetch.
    pub fn purge(&self, matches: impl Fn(&str) -> bool) {
        for (key, fill) in lock(&self.map).iter() {
            if matches(key) {
                fill.purged.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn waiters_stream_chunks_as_they_arrive_and_see_the_end() {
        let inflights = Inflights::default();
        let Role::Leader(fill, writer) = inflights.join("k") else {
            panic!("first is leader")
        };
        let Role::Follower(same) = inflights.join("k") else {
            panic!("second follows")
        };
        assert!(Arc::ptr_eq(&fill, &same));
        let mut a = fill.reader(0, None);
        writer.push(Bytes::from_static(b"hello "));
        let first = a.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "hello ", "streamed before the fill completed");
        let late = fill.reader(0, None);
        writer.push(Bytes::from_static(b"world"));
        writer.finish();
        assert_eq!(a.collect().await.unwrap().to_bytes(), "world");
        assert_eq!(
            late.collect().await.unwrap().to_bytes(),
            "hello world",
            "late joiner replays"
        );
        inflights.close("k", &fill);
        assert!(inflights.is_empty());
    }

    #[tokio::test]
    async fn ranges_skip_and_take_across_chunks() {
        let fill = Fill::new();
        let writer = FillWriter { fill: fill.clone() };
        for part in ["0123", "4567", "89"] {
            writer.push(Bytes::from_static(part.as_bytes()));
        }
        writer.finish();
        assert_eq!(
            fill.reader(3, Some(4)).collect().await.unwrap().to_bytes(),
            "3456"
        );
        assert_eq!(
            fill.reader(8, None).collect().await.unwrap().to_bytes(),
            "89"
        );
        assert_eq!(
            fill.reader(0, Some(0)).collect().await.unwrap().to_bytes(),
            ""
        );
    }

    #[tokio::test]
    async fn a_failed_fill_ends_every_waiter_with_an_error() {
        let fill = Fill::new();
        let writer = FillWriter { fill: fill.clone() };
        let waiter = tokio::spawn({
            let body = fill.reader(0, None);
            async move { body.collect().await.map(|_| ()) }
        });
        writer.push(Bytes::from_static(b"partial"));
        writer.fail("origin closed the connection early");
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(result
            .unwrap_err()
            .to_string()
            .contains("closed the connection early"));
    }

    #[tokio::test]
    async fn an_abandoned_fill_does_not_hang_waiters() {
        let fill = Fill::new();
        let writer = FillWriter { fill: fill.clone() };
        let head = {
            let fill = fill.clone();
            tokio::spawn(async move { fill.head().await })
        };
        let body = fill.reader(0, None);
        drop(writer);
        let wait = std::time::Duration::from_secs(5);
        let head = tokio::time::timeout(wait, head).await.unwrap().unwrap();
        assert!(matches!(*head, Head::Failed { .. }));
        let end = tokio::time::timeout(wait, body.collect()).await.unwrap();
        assert!(end.is_err());
    }
}
