//! What a runtime adapter provides: a clock, timers and task spawning
//! ([`Runtime`]), byte streams ([`Transport`]) and listeners ([`Listener`]).
//! Each adapter implements these in about a hundred lines; everything
//! else is shared.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Clock, timers and tasks of an async runtime.
///
/// The clock is the runtime's own, so tokio's paused time and turmoil's
/// simulated time drive every deadline of the protocol core.
pub trait Runtime: Clone + Send + Sync + Unpin + 'static {
    /// The runtime's notion of now.
    fn now(&self) -> Instant;
    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()>;
    /// Runs a future as an independent task.
    fn spawn(&self, future: BoxFuture<()>);
    /// Runs a future as an independent task without boxing it first, where
    /// the runtime can: each connection's driver is spawned this way, so its
    /// task holds the driver inline instead of a pointer to another
    /// allocation (idle memory per connection). Defaults to `spawn`.
    fn spawn_unboxed<F: Future<Output = ()> + Send + 'static>(&self, future: F)
    where
        Self: Sized,
    {
        self.spawn(Box::pin(future));
    }
}

/// A byte stream: TCP, TLS, a Unix socket or a simulated connection.
pub trait Transport: Send + Unpin + 'static {
    /// Reads into the spare capacity of `buf`, appending; `Ok(0)` is end of
    /// stream. The caller reserves capacity first.
    fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;
    /// Writes from several buffers at once (one syscall for many frames).
    fn poll_write_vectored(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>>;
    /// Flushes buffered output (TLS streams buffer; TCP does not).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts down the write half (sends FIN).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// A connection accepted by a [`Listener`].
#[derive(Debug)]
pub struct Accepted<T> {
    /// The stream.
    pub io: T,
    /// The peer's address, if the transport has one.
    pub remote_addr: Option<SocketAddr>,
    /// Our address, if the transport has one.
    pub local_addr: Option<SocketAddr>,
}

/// A source of incoming connections.
pub trait Listener: Send + 'static {
    /// The stream type it yields.
    type Io: Transport;
    /// Accepts the next connection.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted<Self::Io>>>;
}

/// A step each accepted stream goes through before its HTTP request is
/// read: the TLS handshake, for `wss://`.
///
/// The server runs it in the connection's own task, under the same
/// `handshake_timeout` as the HTTP request that follows (one deadline for
/// both), never in the accept loop: a client that opens TCP and never sends
/// a ClientHello delays nobody else and is dropped at that deadline.
pub trait Acceptor<T: Transport>: Send + Sync + 'static {
    /// The stream the server speaks HTTP and WebSocket over afterwards.
    type Io: Transport;
    /// Performs the step on one accepted stream. An error drops the
    /// connection (it is logged at debug level).
    fn accept(&self, io: T) -> BoxFuture<io::Result<Self::Io>>;
}

/// No step: accepted streams are served as they are (plain `ws://`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl<T: Transport> Acceptor<T> for Plain {
    type Io = T;
    fn accept(&self, io: T) -> BoxFuture<io::Result<T>> {
        Box::pin(std::future::ready(Ok(io)))
    }
}

/// Waits for `future` or `deadline`, whichever comes first; `None` on timeout.
pub(crate) async fn timeout<R: Runtime, F: Future>(rt: &R, deadline: Instant, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut sleep = rt.sleep_until(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Reads once into `buf`.
pub(crate) async fn read_buf<T: Transport>(io: &mut T, buf: &mut BytesMut) -> io::Result<usize> {
    std::future::poll_fn(|cx| io.poll_read_buf(cx, buf)).await
}

/// Writes all of `data`.
pub(crate) async fn write_all<T: Transport>(io: &mut T, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| io.poll_write_vectored(cx, &[IoSlice::new(data)])).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    std::future::poll_fn(|cx| io.poll_flush(cx)).await
}

/// Shuts the stream down, giving up after `deadline`.
pub(crate) async fn shutdown<R: Runtime, T: Transport>(rt: &R, io: &mut T, deadline: Instant) {
    let _ = timeout(rt, deadline, std::future::poll_fn(|cx| io.poll_shutdown(cx))).await;
}
