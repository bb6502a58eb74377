//! The tokio implementation of Blaze's runtime traits.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use blaze_server::{Accepted, BoxFuture, Listener, Runtime, Transport};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

/// Tokio's clock, timers and spawner. The clock is tokio's, so paused
/// time in tests (and turmoil's simulated time) drives every deadline.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)))
    }

    fn spawn(&self, future: BoxFuture<()>) {
        tokio::spawn(future);
    }

    fn spawn_unboxed<F: std::future::Future<Output = ()> + Send + 'static>(&self, future: F) {
        tokio::spawn(future);
    }
}

/// Any tokio byte stream (TCP, TLS, Unix socket, turmoil) as a Blaze transport.
#[derive(Debug)]
pub struct TokioIo<T>(pub T);

impl<T> Transport for TokioIo<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        // Reads into spare capacity without zeroing it first.
        tokio_util::io::poll_read_buf(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_write_vectored(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A source of tokio connections that [`crate::App::serve`] accepts from:
/// TCP and Unix listeners, and your own wrapper (turmoil's simulated
/// listener). For TLS use `App::serve_tls` (feature `tls`): a handshake
/// inside `accept` would hold every connection behind a slow one.
pub trait Accept: Send + 'static {
    /// The accepted stream.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Accepts the next connection, with the peer's and our addresses if known.
    fn accept(&mut self) -> impl std::future::Future<Output = io::Result<Accepted<Self::Stream>>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<Accepted<Self::Stream>> {
        let (stream, remote) = tokio::net::TcpListener::accept(self).await?;
        // Frames are batched by the driver; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        let local_addr = stream.local_addr().ok();
        Ok(Accepted { io: stream, remote_addr: Some(remote), local_addr })
    }
}

#[cfg(unix)]
impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&mut self) -> io::Result<Accepted<Self::Stream>> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        Ok(Accepted { io: stream, remote_addr: None, local_addr: None })
    }
}

/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_millis(500);

/// Feeds connections from an [`Accept`] running in its own task to the
/// server's accept loop.
pub(crate) struct ChannelListener<S> {
    rx: tokio::sync::mpsc::Receiver<io::Result<Accepted<S>>>,
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> ChannelListener<S> {
    pub(crate) fn spawn<A: Accept<Stream = S>>(mut acceptor: A) -> ChannelListener<S> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut backoff = ACCEPT_BACKOFF_MIN;
            loop {
                tokio::select! {
                    // The server stopped: drop the listener, freeing its port.
                    _ = tx.closed() => return,
                    accepted = acceptor.accept() => match accepted {
                        Ok(accepted) => {
                            backoff = ACCEPT_BACKOFF_MIN;
                            if tx.send(Ok(accepted)).await.is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            // Out of descriptors (EMFILE/ENFILE): the listener
                            // stays readable, so accepting again at once would
                            // spin and fill the channel with stale errors that
                            // the server would then work through after the
                            // descriptors are back. Report it (if there is
                            // room) and back off here, at the source.
                            let _ = tx.try_send(Err(err));
                            tokio::select! {
                                _ = tx.closed() => return,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        }
                    },
                }
            }
        });
        ChannelListener { rx }
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Listener for ChannelListener<S> {
    type Io = TokioIo<S>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted<Self::Io>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(accepted)) => Poll::Ready(accepted.map(|a| Accepted {
                io: TokioIo(a.io),
                remote_addr: a.remote_addr,
                local_addr: a.local_addr,
            })),
            Poll::Ready(None) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}
