//! Lingering close for TCP viewers (RFC 9112 §9.6). When the node closes a connection
//! while the viewer still has bytes in flight towards it — HTTP/2 WINDOW_UPDATEs for the
//! body it is reading, a request body nobody reads — the kernel answers the close with a
//! reset, and a reset makes the viewer's kernel throw away response bytes it has received
//! but the viewer has not read yet: the end of a download is lost. So a connection the
//! node is done with is half-closed (FIN) and what the viewer still sends is read and
//! discarded until it closes its side (nginx's `lingering_timeout` and `lingering_time`:
//! [`LINGER_QUIET`] without a byte, [`LINGER`] in all). A drain waits for these; the
//! viewer's per-address connection slot is held until the socket is really closed.
//!
//! A connection cut for stalling (`stall.rs`) is reset on purpose and never lingers.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::conn_limit::ConnPermit;

/// The longest a closed connection waits for the viewer to close its side.
pub const LINGER: Duration = Duration::from_secs(30);

/// ... and for the next byte from it: a viewer still reading the tail of a download keeps
/// sending (WINDOW_UPDATEs, ACK-only segments do not count), one that is done goes quiet.
pub const LINGER_QUIET: Duration = Duration::from_secs(5);

/// Beyond this many lingering connections, a close is immediate: lingering must not
/// become a way to hold the node's sockets.
const MAX_LINGERING: usize = 4096;

/// Connections lingering now, so that a drain can wait for them.
#[derive(Default)]
pub struct Lingering {
    count: AtomicUsize,
    idle: Notify,
}

impl Lingering {
    /// Returns once no connection lingers.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    fn enter(self: &Arc<Self>) -> Option<Entered> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_LINGERING {
            self.leave();
            return None;
        }
        Some(Entered(self.clone()))
    }

    fn leave(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

struct Entered(Arc<Lingering>);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A viewer's TCP stream that lingers when dropped.
pub struct LingeringTcp {
    /// Taken only by `Drop`.
    stream: Option<TcpStream>,
    lingering: Arc<Lingering>,
    reset: bool,
    /// The viewer's per-address slot, released when the socket closes.
    permit: Option<ConnPermit>,
}

impl LingeringTcp {
    pub fn new(stream: TcpStream, lingering: Arc<Lingering>, permit: Option<ConnPermit>) -> Self {
        LingeringTcp {
            stream: Some(stream),
            lingering,
            reset: false,
            permit,
        }
    }

    /// Closes with a reset instead (zero linger), dropping whatever is unsent.
    pub fn reset_on_close(&mut self) {
        self.reset = true;
        if let Some(s) = &self.stream {
            let _ = s.set_zero_linger();
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for LingeringTcp {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if self.reset {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(entered) = self.lingering.enter() else {
            return;
        };
        let permit = self.permit.take();
        runtime.spawn(async move {
            linger(stream).await;
            drop((entered, permit));
        });
    }
}

async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(Ok(n)) = tokio::time::timeout(LINGER_QUIET, stream.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

impl AsyncRead for LingeringTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LingeringTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node answers and closes while the viewer's last bytes towards it are unread:
    /// the viewer still reads the whole answer (a plain close would reset it away).
    #[tokio::test]
    async fn the_viewer_reads_everything_although_it_sent_bytes_the_node_never_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lingering = Arc::new(Lingering::default());
        let tracker = lingering.clone();
        let answer = vec![7u8; 4 * 1024 * 1024];
        let sent = answer.clone();
        let node = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = LingeringTcp::new(tcp, tracker, None);
            // Give the viewer's bytes time to arrive, unread.
            let mut first = [0u8; 1];
            conn.read_exact(&mut first).await.unwrap();
            conn.write_all(&sent).await.unwrap();
            drop(conn);
        });
        let mut viewer = TcpStream::connect(addr).await.unwrap();
        viewer.write_all(&[1u8; 64 * 1024]).await.unwrap();
        // Let the node finish writing and close before reading anything.
        let mut first = [0u8; 1];
        viewer.read_exact(&mut first).await.unwrap();
        let mut got = first.to_vec();
        let (read, closed) = tokio::join!(viewer.read_to_end(&mut got), node);
        read.unwrap();
        closed.unwrap();
        assert_eq!(got.len(), answer.len());
        drop(viewer);
        tokio::time::timeout(Duration::from_secs(5), lingering.wait_idle())
            .await
            .expect("lingering never ended");
    }

    #[tokio::test]
    async fn a_reset_connection_does_not_linger() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lingering = Arc::new(Lingering::default());
        let _viewer = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = LingeringTcp::new(tcp, lingering.clone(), None);
        conn.reset_on_close();
        drop(conn);
        assert_eq!(lingering.count.load(Ordering::Acquire), 0);
    }
}
