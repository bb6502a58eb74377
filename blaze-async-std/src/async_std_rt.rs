//! The async-std implementation of Blaze's runtime traits.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use blaze_server::{Accepted, BoxFuture, Listener, Runtime, Transport};
use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};

/// async-std's timers and spawner, on the system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdRuntime;

impl Runtime for AsyncStdRuntime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        Box::pin(async_std::task::sleep(deadline.saturating_duration_since(Instant::now())))
    }

    fn spawn(&self, future: BoxFuture<()>) {
        async_std::task::spawn(future);
    }

    fn spawn_unboxed<F: std::future::Future<Output = ()> + Send + 'static>(&self, future: F) {
        async_std::task::spawn(future);
    }
}

/// Any `futures-io` byte stream (async-std TCP, Unix, TLS) as a Blaze transport.
#[derive(Debug)]
pub struct AsyncStdIo<T>(pub T);

impl<T> Transport for AsyncStdIo<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        // futures-io reads into initialized memory. Zeroing the spare
        // capacity on every read cost a memset of all of it per read (a
        // peer trickling 1-byte segments into a large buffer made reading
        // quadratic; issue 10): read into this thread's scratch buffer,
        // zeroed once, and copy what arrived. Each read costs O(bytes read).
        let want = (buf.capacity() - buf.len()).clamp(1, SCRATCH_SIZE);
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => read_into(&mut self.0, cx, &mut scratch[..want], buf),
            // Only if `T::poll_read` itself reads another Blaze transport
            // on this thread: fall back to a zeroed buffer of our own.
            Err(_) => read_into(&mut self.0, cx, &mut vec![0; want], buf),
        })
    }

    fn poll_write_vectored(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The most one read takes in (loopback and TCP reads rarely return more).
const SCRATCH_SIZE: usize = 64 * 1024;

std::thread_local! {
    /// Initialized once per thread; reads land here before being copied.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

fn read_into<T: AsyncRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    scratch: &mut [u8],
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let result = Pin::new(io).poll_read(cx, scratch);
    if let Poll::Ready(Ok(n)) = result {
        buf.extend_from_slice(&scratch[..n]);
    }
    result
}

/// A source of async-std connections for [`crate::App::serve`].
pub trait Accept: Send + 'static {
    /// The accepted stream.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Accepts the next connection.
    fn accept(&mut self) -> impl std::future::Future<Output = io::Result<Accepted<Self::Stream>>> + Send;
}

impl Accept for async_std::net::TcpListener {
    type Stream = async_std::net::TcpStream;
    async fn accept(&mut self) -> io::Result<Accepted<Self::Stream>> {
        let (stream, remote) = async_std::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        let local_addr = stream.local_addr().ok();
        Ok(Accepted { io: stream, remote_addr: Some(remote), local_addr })
    }
}

/// One accept in flight: it owns the acceptor and hands it back with the result.
type PendingAccept<A> = BoxFuture<(A, io::Result<Accepted<<A as Accept>::Stream>>)>;

/// Polls an [`Accept`]or's future across calls to `poll_accept`.
pub(crate) struct AcceptLoop<A: Accept> {
    acceptor: Option<A>,
    pending: Option<PendingAccept<A>>,
}

impl<A: Accept> AcceptLoop<A> {
    pub(crate) fn new(acceptor: A) -> Self {
        AcceptLoop { acceptor: Some(acceptor), pending: None }
    }
}

impl<A: Accept> Listener for AcceptLoop<A> {
    type Io = AsyncStdIo<A::Stream>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted<Self::Io>>> {
        if self.pending.is_none() {
            let mut acceptor = self.acceptor.take().expect("acceptor is back after each accept");
            self.pending = Some(Box::pin(async move {
                let accepted = acceptor.accept().await;
                (acceptor, accepted)
            }));
        }
        let pending = self.pending.as_mut().expect("set above");
        match pending.as_mut().poll(cx) {
            Poll::Ready((acceptor, accepted)) => {
                self.acceptor = Some(acceptor);
                self.pending = None;
                Poll::Ready(accepted.map(|a| Accepted {
                    io: AsyncStdIo(a.io),
                    remote_addr: a.remote_addr,
                    local_addr: a.local_addr,
                }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
