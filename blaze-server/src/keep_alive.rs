//! HTTP/1.1 keep-alive for plain HTTP routes (RFC 9112 §9.3), so a page
//! and its assets load over one connection.
//!
//! A connection persists after a response of an HTTP route when the
//! request allows it (HTTP/1.1 unless it says `Connection: close`;
//! HTTP/1.0 only with `Connection: keep-alive`), the response does not say
//! `Connection: close`, and the connection has carried fewer than
//! `WsConfig::http_keep_alive_requests` requests. It then waits up to
//! `WsConfig::http_keep_alive_timeout` for the next request's first byte
//! (closing silently after), and that request has the same head limit and
//! `handshake_timeout` as the first. Pipelined requests are read from what
//! is left in the buffer and answered in order. Rejections (400, 404,
//! 405, 413, 501, a guard's refusal) still close: after them the rest of
//! the input may not be a request. A WebSocket upgrade on a kept-alive
//! connection is handled as on a fresh one.

use std::future::{poll_fn, Future};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;

use blaze_proto::handshake::HttpRequest;

use crate::request::Response;
use crate::runtime::{read_buf, timeout, write_all, Runtime, Transport};
use crate::serve::TaskGuard;
use crate::shutdown::Shutdown;

/// A connection between requests: its transport, what it has sent past
/// the last request, how many requests it has carried.
pub(crate) struct HttpConn<T> {
    pub(crate) io: T,
    pub(crate) buf: BytesMut,
    pub(crate) served: usize,
    pub(crate) guard: TaskGuard,
}

/// Whether `request` lets the connection persist after its response.
pub(crate) fn requested(request: &HttpRequest) -> bool {
    let has = |token: &str| {
        request.header_all("connection").flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if request.version >= 1 {
        !has("close")
    } else {
        has("keep-alive")
    }
}

/// Whether the connection is kept after `response`: the request asked for
/// it (`requested` and under the request bound) and the handler did not
/// say `Connection: close`.
pub(crate) fn keeps(requested: bool, response: &Response) -> bool {
    requested
        && !response.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection") && value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        })
}

/// Waits up to `idle` for the next request to begin. `false`: the client
/// closed, stayed silent too long, or the server is shutting down (an
/// idle kept-alive connection must not hold up the drain); the
/// connection just ends.
pub(crate) async fn wait_for_request<R: Runtime, T: Transport>(
    rt: &R,
    io: &mut T,
    buf: &mut BytesMut,
    idle: Duration,
    shutdown: &Shutdown,
) -> bool {
    if shutdown.is_triggered() {
        return false;
    }
    if !buf.is_empty() {
        // Pipelined: the next request is here already.
        return true;
    }
    let deadline = blaze_proto::deadline_after(rt.now(), idle);
    // A fresh small buffer: the last request's (grown by a large body)
    // is not kept while the connection idles.
    *buf = BytesMut::with_capacity(1024);
    let mut read = std::pin::pin!(timeout(rt, deadline, read_buf(io, buf)));
    let mut stop = std::pin::pin!(shutdown.wait());
    poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        read.as_mut().poll(cx).map(|read| matches!(read, Some(Ok(n)) if n > 0))
    })
    .await
}

/// Writes a response that keeps the connection. `false`: the write failed
/// or took over 5 s (as for a closing response); the connection ends.
pub(crate) async fn respond<R: Runtime, T: Transport>(rt: &R, io: &mut T, response: &Response) -> bool {
    crate::metrics::http_response(response.status);
    let deadline = rt.now() + Duration::from_secs(5);
    matches!(timeout(rt, deadline, write_all(io, &response.to_bytes_keep_alive())).await, Some(Ok(())))
}
