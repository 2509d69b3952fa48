//! Slow read through HTTP/2 flow control. A viewer can keep its TCP window wide open and
//! still starve a stream by granting a few bytes of stream window at a time; the
//! connection looks busy (WINDOW_UPDATEs keep arriving), so the TCP guard in `stall.rs`
//! never fires, and hyper only asks the response body for its next chunk once the last
//! one went out, so nothing of ours runs while the stream is starved.
//!
//! hyper runs each HTTP/2 stream as a task on the executor it is given. [`StreamExecutor`]
//! wraps those tasks in a [`Watched`] future that shares a [`SendClock`] (through a task
//! local) with the response body, which [`watch_body`] wraps as the pipeline hands it over:
//! every slice (≤ 16 KiB) handed to hyper sets a deadline (the send-rate window plus the
//! slice's time at the minimum rate), every request for the next one clears it. hyper asks
//! for the next slice as soon as the last one is buffered and then waits for window with
//! it in hand, so a deadline really covers "the previous slice went out and there is
//! window for more". A connection shares one [`ConnProgress`]: a stream is cut only when
//! its own deadline passed *and* no stream of its connection handed over a slice for a
//! whole window — several downloads sharing a slow link keep each other alive, a starved
//! stream on an otherwise idle connection does not. A task cut this way is dropped, which
//! resets the stream (RST_STREAM CANCEL) and frees the origin stream behind it.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use origin::{Body, BoxError};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use super::stall::StallLimits;

/// Milliseconds since this instant; 0 in a deadline means "none".
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64 + 1
}

/// When any stream of a connection last handed a slice over (HTTP/2 and HTTP/3).
#[derive(Default)]
pub struct ConnProgress {
    last_ms: AtomicU64,
}

impl ConnProgress {
    pub fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Release);
    }

    /// When the connection counts as stalled, as milliseconds since [`EPOCH`].
    fn quiet_deadline_ms(&self, window: Duration) -> u64 {
        self.last_ms.load(Ordering::Acquire) + window.as_millis() as u64
    }

    /// As an instant, for HTTP/3's sends.
    pub fn quiet_deadline(&self, window: Duration) -> Instant {
        *EPOCH + Duration::from_millis(self.quiet_deadline_ms(window))
    }
}

/// Shared by a stream's task and its response body.
pub struct SendClock {
    limits: StallLimits,
    deadline_ms: AtomicU64,
    conn: Arc<ConnProgress>,
}

tokio::task_local! {
    static CLOCK: Arc<SendClock>;
}

/// The executor hyper's HTTP/2 server spawns stream tasks on; one per connection.
#[derive(Clone)]
pub struct StreamExecutor {
    pub limits: StallLimits,
    pub conn: Arc<ConnProgress>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        if self.limits.min_send_rate == 0 {
            tokio::spawn(fut);
            return;
        }
        let clock = Arc::new(SendClock {
            limits: self.limits,
            deadline_ms: AtomicU64::new(0),
            conn: self.conn.clone(),
        });
        tokio::spawn(Watched {
            inner: Box::pin(fut),
            clock,
            timer: None,
        });
    }
}

/// A stream task that ends (dropping the stream) once its body is overdue.
struct Watched<F> {
    inner: Pin<Box<F>>,
    clock: Arc<SendClock>,
    timer: Option<(u64, Pin<Box<Sleep>>)>,
}

impl<F: Future> Future for Watched<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let clock = this.clock.clone();
        if CLOCK
            .sync_scope(clock, || this.inner.as_mut().poll(cx))
            .is_ready()
        {
            return Poll::Ready(());
        }
        let own = this.clock.deadline_ms.load(Ordering::Acquire);
        if own == 0 {
            this.timer = None;
            return Poll::Pending;
        }
        let window = this.clock.limits.send_rate_window;
        let deadline = own.max(this.clock.conn.quiet_deadline_ms(window));
        let at = *EPOCH + Duration::from_millis(deadline);
        match &mut this.timer {
            Some((armed, sleep)) if *armed != deadline => {
                sleep.as_mut().reset(at);
                *armed = deadline;
            }
            Some(_) => {}
            None => this.timer = Some((deadline, Box::pin(tokio::time::sleep_until(at)))),
        }
        let Some((_, sleep)) = &mut this.timer else {
            return Poll::Pending;
        };
        // Both parts were read in this poll: a fired timer means neither moved since.
        if sleep.as_mut().poll(cx).is_ready() {
            tracing::debug!("h2 viewer reading below the minimum send rate: stream reset");
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Wraps a response body so its stream task can tell a starved viewer from a slow origin.
/// Outside an HTTP/2 stream task (HTTP/1.1, where `stall.rs` watches the socket) the body
/// is returned as it is.
pub fn watch_body(body: Body) -> Body {
    match CLOCK.try_with(|clock| clock.clone()) {
        Ok(clock) => Body::new(WatchedBody {
            inner: body,
            clock,
            rest: Bytes::new(),
        }),
        Err(_) => body,
    }
}

/// The most handed to hyper (or to one HTTP/3 `send_data`) at once. A cache hit is one
/// chunk the size of the object; a slice's deadline grows with its size, and only handed
/// slices count as the connection's progress, so small slices keep both close to the
/// window: a slow but steady viewer (several streams sharing a slow link) is seen
/// progressing within every window. Slicing `Bytes` shares the buffer, it copies nothing.
pub const MAX_SLICE: usize = 16 * 1024;

struct WatchedBody {
    inner: Body,
    clock: Arc<SendClock>,
    /// What is left of a chunk larger than [`MAX_SLICE`].
    rest: Bytes,
}

impl WatchedBody {
    fn handed(&self, len: usize) {
        let limits = self.clock.limits;
        let allowance =
            limits.send_rate_window + Duration::from_secs(len as u64 / limits.min_send_rate.max(1));
        let deadline = now_ms() + allowance.as_millis() as u64;
        self.clock.deadline_ms.store(deadline, Ordering::Release);
        self.clock.conn.touch();
    }

    fn slice(&mut self, mut data: Bytes) -> Frame<Bytes> {
        if data.len() > MAX_SLICE {
            self.rest = data.split_off(MAX_SLICE);
        }
        self.handed(data.len());
        Frame::data(data)
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Asked for more: the viewer took the last chunk. Waiting on the origin from here
        // is not the viewer's fault.
        self.clock.deadline_ms.store(0, Ordering::Release);
        if !self.rest.is_empty() {
            let rest = std::mem::take(&mut self.rest);
            return Poll::Ready(Some(Ok(self.slice(rest))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Poll::Ready(Some(Ok(self.slice(data)))),
                Err(other) => Poll::Ready(Some(Ok(other))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}
