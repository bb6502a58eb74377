//! Server-wide admission: the global caps (`max_total_connections`,
//! `max_pending_handshakes`), checked at accept before any per-connection
//! work and answered with a static 503, and the accept loop's back-off.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;

use crate::app::App;
use crate::runtime::{read_buf, shutdown, timeout, write_all, Runtime, Transport};
use crate::serve::TaskCount;
use crate::shutdown::Shutdown;

/// What an over-cap socket gets: no request is read, no route looked up.
pub(crate) const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\nRetry-After: 1\r\n\r\nserver busy\n";

/// Rejected sockets answered at once by a task of their own (write the
/// 503, send FIN, read what the client sent so closing does not reset the
/// connection before it reads the answer). Past this many, a rejected
/// socket gets one write attempt and is dropped at once, so a flood of
/// rejections holds at most this many descriptors for at most
/// [`LINGER`].
const MAX_LINGERING: usize = 64;
/// How long a lingering rejection waits for the client.
const LINGER: Duration = Duration::from_secs(1);

/// Whether one more accepted socket would exceed `max_total_connections`
/// or `max_pending_handshakes` (both app-wide, from [`App::config`]).
pub(crate) fn over_global_caps(app: &App, tasks: &TaskCount) -> bool {
    let (max_total, max_pending) = {
        let config = app.inner.config.read().unwrap_or_else(PoisonError::into_inner);
        (config.max_total_connections, config.max_pending_handshakes)
    };
    let total = tasks.0.load(Ordering::SeqCst);
    let pending = tasks.1.load(Ordering::SeqCst);
    let over = max_total.is_some_and(|max| total >= max) || max_pending.is_some_and(|max| pending >= max);
    if over {
        tracing::debug!(total, pending, "over the server's connection caps: 503");
    }
    over
}

/// Answers an over-cap socket with [`BUSY_RESPONSE`] without holding up
/// the accept loop.
pub(crate) async fn reject_busy<R: Runtime, T: Transport>(rt: &R, mut io: T, tasks: &Arc<TaskCount>) {
    if tasks.2.fetch_add(1, Ordering::SeqCst) < MAX_LINGERING {
        let tasks = tasks.clone();
        let task_rt = rt.clone();
        rt.spawn(Box::pin(async move {
            let rt = task_rt;
            let deadline = rt.now() + LINGER;
            if timeout(&rt, deadline, write_all(&mut io, BUSY_RESPONSE)).await.is_some_and(|r| r.is_ok()) {
                shutdown(&rt, &mut io, deadline).await;
                let mut sink = BytesMut::with_capacity(4096);
                while let Some(Ok(n)) = timeout(&rt, deadline, read_buf(&mut io, &mut sink)).await {
                    if n == 0 {
                        break;
                    }
                    sink.clear();
                }
            }
            tasks.2.fetch_sub(1, Ordering::SeqCst);
        }));
        return;
    }
    tasks.2.fetch_sub(1, Ordering::SeqCst);
    // One try, never a wait: a fresh socket's send buffer is empty.
    std::future::poll_fn(|cx| {
        let _ = io.poll_write_vectored(cx, &[std::io::IoSlice::new(BUSY_RESPONSE)]);
        let _ = io.poll_shutdown(cx);
        Poll::Ready(())
    })
    .await;
}

/// Sleeps for `pause`, or less if shutdown starts meanwhile.
pub(crate) async fn sleep_or_shutdown<R: Runtime>(rt: &R, shutdown: &Shutdown, pause: Duration) {
    let deadline = rt.now() + pause;
    let _ = timeout(rt, deadline, shutdown.triggered()).await;
}

/// What a read in the HTTP phase came to, racing the shutdown signal.
pub(crate) enum PhaseRead {
    /// `Some(n)`: bytes read (0 at end of stream); `None`: the read failed.
    Read(Option<usize>),
    TimedOut,
    ShuttingDown,
}

/// Reads once into `buf` unless `deadline` passes or shutdown starts
/// first: a request still arriving when the server stops is answered 503
/// at once instead of keeping the drain waiting (issue 10).
pub(crate) async fn read_or_shutdown<R: Runtime, T: Transport>(
    rt: &R,
    shutdown: &Shutdown,
    deadline: std::time::Instant,
    io: &mut T,
    buf: &mut BytesMut,
) -> PhaseRead {
    let mut stop = std::pin::pin!(shutdown.triggered());
    let mut read = std::pin::pin!(read_buf(io, buf));
    let raced = timeout(
        rt,
        deadline,
        std::future::poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            read.as_mut().poll(cx).map(Some)
        }),
    )
    .await;
    match raced {
        None => PhaseRead::TimedOut,
        Some(None) => PhaseRead::ShuttingDown,
        Some(Some(Ok(n))) => PhaseRead::Read(Some(n)),
        Some(Some(Err(_))) => PhaseRead::Read(None),
    }
}
