//! Closes a TCP connection that stalls. Sits under TLS, so handshakes and keep-alive waits
//! count:
//!
//! - **idle**: no bytes moved in either direction for `idle_timeout`;
//! - **slow read**: while the viewer is the bottleneck — the node has bytes for it and a
//!   write blocks — it took fewer than `min_send_rate` bytes per second, over a whole
//!   `send_rate_window` of such blocked time. Only blocked time counts: keep-alive gaps and
//!   waits on a slow origin are nobody's fault. Without this a viewer that shrinks its TCP
//!   window and reads a byte at a time holds a connection, its buffers and an origin
//!   stream forever while looking active. Such a connection is reset (its unsent bytes
//!   dropped); an idle one is closed normally, since the kernel may still be delivering
//!   what was written.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

#[derive(Clone, Copy, Debug)]
pub struct StallLimits {
    pub idle_timeout: Duration,
    /// Bytes per second; 0 turns the slow-read check off.
    pub min_send_rate: u64,
    pub send_rate_window: Duration,
}

/// A stalled connection is closed with a reset (zero linger), so the kernel drops what the
/// viewer has not taken: a graceful close would leave up to a send buffer (4 MiB here) to
/// trickle out for as long as the slow reader likes.
pub trait ResetOnClose {
    fn reset_on_close(&mut self);
}

impl ResetOnClose for super::linger::LingeringTcp {
    fn reset_on_close(&mut self) {
        super::linger::LingeringTcp::reset_on_close(self);
    }
}

#[cfg(test)]
impl ResetOnClose for tokio::io::DuplexStream {
    fn reset_on_close(&mut self) {}
}

const IDLE: &str = "connection idle";
const SLOW_READ: &str = "viewer reading below the minimum send rate";

fn stalled(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

pub struct StallGuard<T> {
    inner: T,
    limits: StallLimits,
    idle_timer: Pin<Box<Sleep>>,
    /// Set by every read or write; checked (and cleared) only when the timer fires, so a
    /// busy connection pays nothing per I/O call. A connection is closed after between
    /// one and two timeouts of silence.
    active: bool,
    /// The current blocked write started here (`None`: not blocked).
    blocked_since: Option<Instant>,
    /// Blocked time and bytes written since the last judgement.
    blocked_for: Duration,
    sent: u64,
    /// Fires when blocked time would reach the window during the current block.
    window_timer: Option<Pin<Box<Sleep>>>,
    /// Why the connection was judged stalled. Sticky: hyper may see the first error on
    /// its read side, note it and keep writing; every later call fails the same way.
    stalled: Option<&'static str>,
}

impl<T: ResetOnClose> StallGuard<T> {
    pub fn new(inner: T, limits: StallLimits) -> Self {
        StallGuard {
            inner,
            limits,
            idle_timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            active: false,
            blocked_since: None,
            blocked_for: Duration::ZERO,
            sent: 0,
            window_timer: None,
            stalled: None,
        }
    }

    /// Called whenever the inner I/O is pending, which registers the timers' wakers.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if let Some(why) = self.stalled {
            return Poll::Ready(stalled(why));
        }
        while self.idle_timer.as_mut().poll(cx).is_ready() {
            if !std::mem::take(&mut self.active) {
                return Poll::Ready(self.stall(IDLE));
            }
            let next = Instant::now() + self.limits.idle_timeout;
            self.idle_timer.as_mut().reset(next);
        }
        if let Some(timer) = &mut self.window_timer {
            if timer.as_mut().poll(cx).is_ready() {
                self.window_timer = None;
                if let Some(since) = self.blocked_since {
                    let blocked = self.blocked_for + since.elapsed();
                    if self.judge(blocked) {
                        return Poll::Ready(self.stall(SLOW_READ));
                    }
                    // Judged fine: a new measurement starts within this block.
                    self.blocked_since = Some(Instant::now());
                    self.arm_window(cx);
                }
            }
        }
        Poll::Pending
    }

    /// After `blocked` of blocked time (at least a window): below the floor? Resets the
    /// measurement either way.
    fn judge(&mut self, blocked: Duration) -> bool {
        let floor = u128::from(self.limits.min_send_rate) * blocked.as_millis() / 1000;
        let slow = u128::from(self.sent) < floor;
        if slow {
            tracing::debug!(
                sent = self.sent,
                ?blocked,
                "viewer reading below the minimum send rate"
            );
        }
        self.sent = 0;
        self.blocked_for = Duration::ZERO;
        slow
    }

    fn arm_window(&mut self, cx: &mut Context<'_>) {
        let left = self
            .limits
            .send_rate_window
            .saturating_sub(self.blocked_for);
        let mut timer = Box::pin(tokio::time::sleep(left));
        // Registers the waker; a zero wait is judged on the next poll.
        let _ = timer.as_mut().poll(cx);
        self.window_timer = Some(timer);
    }

    fn stall(&mut self, why: &'static str) -> io::Error {
        self.stalled = Some(why);
        if why == SLOW_READ {
            self.inner.reset_on_close();
        }
        stalled(why)
    }

    /// Fails a call up front once the connection was judged stalled.
    fn check(&self) -> Option<io::Error> {
        self.stalled.map(stalled)
    }

    fn write_blocked(&mut self, cx: &mut Context<'_>) {
        if self.limits.min_send_rate == 0 || self.blocked_since.is_some() {
            return;
        }
        self.blocked_since = Some(Instant::now());
        self.arm_window(cx);
    }

    fn wrote(&mut self, n: usize) {
        self.active = true;
        self.sent = self.sent.saturating_add(n as u64);
        if let Some(since) = self.blocked_since.take() {
            self.window_timer = None;
            self.blocked_for += since.elapsed();
            if self.blocked_for >= self.limits.send_rate_window && self.judge(self.blocked_for) {
                // The bytes were written; the next call fails.
                self.stalled = Some(SLOW_READ);
                self.inner.reset_on_close();
            }
        }
    }
}

impl<T: AsyncRead + ResetOnClose + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending => match self.poll_stall(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                self.active = true;
                ready
            }
        }
    }
}

impl<T: AsyncWrite + ResetOnClose + Unpin> StallGuard<T> {
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Pending => {
                self.write_blocked(cx);
                match self.poll_stall(cx) {
                    Poll::Ready(e) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Ready(Ok(n)) => {
                self.wrote(n);
                Poll::Ready(Ok(n))
            }
            ready => ready,
        }
    }
}

impl<T: AsyncWrite + ResetOnClose + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, r)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(idle: u64, rate: u64, window: u64) -> StallLimits {
        StallLimits {
            idle_timeout: Duration::from_secs(idle),
            min_send_rate: rate,
            send_rate_window: Duration::from_secs(window),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_times_out_and_active_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut idle = StallGuard::new(a, limits(10, 0, 5));
        let mut buf = [0u8; 4];
        // Activity every 6 s keeps it open well past the 10 s timeout.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            b.write_all(b"ping").await.unwrap();
            idle.read_exact(&mut buf).await.unwrap();
        }
        let quiet_since = Instant::now();
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let quiet = quiet_since.elapsed();
        assert!(
            quiet >= Duration::from_secs(10) && quiet <= Duration::from_secs(20),
            "{quiet:?}"
        );
    }

    /// Writes 64 KiB through a 1 KiB pipe whose far end reads `chunk` bytes every 100 ms.
    async fn send_to_reader(chunk: usize) -> io::Result<()> {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut guard = StallGuard::new(a, limits(60, 1000, 5));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; chunk];
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match b.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        let r = guard.write_all(&[7u8; 64 * 1024]).await;
        reader.abort();
        r
    }

    #[tokio::test(start_paused = true)]
    async fn a_viewer_reading_below_the_minimum_rate_is_cut_off() {
        // 10 bytes per 100 ms = 100 B/s, under the 1000 B/s floor.
        let started = Instant::now();
        let err = send_to_reader(10).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), SLOW_READ);
        // Judged at the end of the first window (5 s), with the waker registered.
        assert!(
            started.elapsed() <= Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_sufficient_viewer_is_served_in_full() {
        // 200 bytes per 100 ms = 2000 B/s: slow, blocked all the time, but above the floor.
        send_to_reader(200).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_gaps_do_not_count_against_the_viewer() {
        // A short blocked fetch, nearly a window of silence, then a fetch read at twice
        // the floor: only blocked time is measured, so nothing is judged slow.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut guard = StallGuard::new(a, limits(600, 1000, 5));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 200];
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match b.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        guard.write_all(&[1u8; 2048]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(4900)).await;
        guard.write_all(&[2u8; 32 * 1024]).await.unwrap();
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_origin_is_not_the_viewers_fault() {
        // The node writes a little now and then (its origin is slow) and the viewer reads
        // everything at once: writes never block, so no rate is judged.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut guard = StallGuard::new(a, limits(60, 1000, 5));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while b.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            guard.write_all(b"x").await.unwrap();
        }
        drop(guard);
        reader.await.unwrap();
    }
}
