//! An in-memory duplex byte stream with bounded buffers.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;

use crate::runtime::Transport;

/// Bytes each direction of a [`pipe`] holds by default before a writer
/// must wait: a socket's buffers are of this order, so backpressure (a
/// reader that stops reading) reaches the writer as it would over TCP.
pub const DEFAULT_PIPE_CAPACITY: usize = 64 * 1024;

/// One direction: bytes written and not yet read.
#[derive(Default)]
struct Direction {
    buf: VecDeque<u8>,
    capacity: usize,
    /// The writer shut down or was dropped: end of stream after `buf`.
    write_closed: bool,
    /// The reader was dropped: writes fail (a reset).
    read_closed: bool,
    /// Held (a partition): the reader sees nothing until released.
    held: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

type Shared = Arc<Mutex<Direction>>;

fn lock(d: &Shared) -> MutexGuard<'_, Direction> {
    d.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One end of an in-memory connection (see [`pipe`]): a [`Transport`]
/// that reads what the other end wrote. Writes complete only as far as
/// the other end's buffer has room; dropping an end is a FIN for the
/// other's reads and a reset for its writes.
#[derive(Debug)]
pub struct MemStream {
    read: Shared,
    write: Shared,
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction")
            .field("buffered", &self.buf.len())
            .field("capacity", &self.capacity)
            .field("write_closed", &self.write_closed)
            .field("read_closed", &self.read_closed)
            .field("held", &self.held)
            .finish()
    }
}

/// A connected pair of [`MemStream`]s, each direction buffering at most
/// `capacity` bytes (at least 1).
pub fn pipe(capacity: usize) -> (MemStream, MemStream) {
    let a_to_b: Shared = Arc::new(Mutex::new(Direction { capacity: capacity.max(1), ..Direction::default() }));
    let b_to_a: Shared = Arc::new(Mutex::new(Direction { capacity: capacity.max(1), ..Direction::default() }));
    (MemStream { read: b_to_a.clone(), write: a_to_b.clone() }, MemStream { read: a_to_b, write: b_to_a })
}

impl MemStream {
    /// Reads what has arrived, without waiting: `Ok(0)` at end of stream,
    /// `WouldBlock` if nothing is there yet.
    pub fn try_read(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut d = lock(&self.read);
        if d.held || d.buf.is_empty() {
            return if d.write_closed && !d.held { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = d.buf.len();
        out.extend(d.buf.drain(..));
        if let Some(w) = d.writer.take() {
            w.wake();
        }
        Ok(n)
    }

    /// Writes as much of `data` as there is room for, without waiting.
    pub fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut d = lock(&self.write);
        write_into(&mut d, &[IoSlice::new(data)], None)
    }

    /// Ends this end's output (FIN): the other end reads end of stream
    /// once it has read everything before it.
    pub fn shutdown_write(&mut self) {
        close_write(&self.write);
    }

    /// Holds both directions (a network partition, no FIN): nothing
    /// written by either end reaches the other until [`release`](Self::release).
    pub fn hold(&self) {
        self.link().hold();
    }

    /// Ends a [`hold`](Self::hold): what was written meanwhile arrives.
    pub fn release(&self) {
        self.link().release();
    }

    /// The connection's controls, usable after the stream is moved away.
    pub fn link(&self) -> super::Link {
        super::Link(LinkInner { read: self.read.clone(), write: self.write.clone() })
    }

    /// Bytes written by the other end that this end has not read.
    pub fn unread(&self) -> usize {
        lock(&self.read).buf.len()
    }
}

/// Both directions of a pipe, for holding and releasing them.
#[derive(Debug, Clone)]
pub(crate) struct LinkInner {
    read: Shared,
    write: Shared,
}

impl LinkInner {
    pub(crate) fn hold(&self) {
        lock(&self.read).held = true;
        lock(&self.write).held = true;
    }

    pub(crate) fn release(&self) {
        for d in [&self.read, &self.write] {
            let mut d = lock(d);
            d.held = false;
            if let Some(r) = d.reader.take() {
                r.wake();
            }
        }
    }
}

fn write_into(d: &mut Direction, bufs: &[IoSlice<'_>], cx: Option<&mut Context<'_>>) -> io::Result<usize> {
    if d.read_closed {
        return Err(io::ErrorKind::BrokenPipe.into());
    }
    if d.write_closed {
        return Err(io::ErrorKind::NotConnected.into());
    }
    let room = d.capacity.saturating_sub(d.buf.len());
    if room == 0 {
        if let Some(cx) = cx {
            d.writer = Some(cx.waker().clone());
        }
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let mut written = 0;
    for buf in bufs {
        let take = buf.len().min(room - written);
        d.buf.extend(&buf[..take]);
        written += take;
        if written == room {
            break;
        }
    }
    if written > 0 && !d.held {
        if let Some(r) = d.reader.take() {
            r.wake();
        }
    }
    Ok(written)
}

fn close_write(write: &Shared) {
    let mut d = lock(write);
    d.write_closed = true;
    if let Some(r) = d.reader.take() {
        r.wake();
    }
}

impl Transport for MemStream {
    fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        let mut d = lock(&self.read);
        if d.held || d.buf.is_empty() {
            if d.write_closed && !d.held {
                return Poll::Ready(Ok(0));
            }
            d.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // As a socket read does: at most the spare capacity reserved.
        let n = d.buf.len().min((buf.capacity() - buf.len()).max(64));
        let (front, back) = d.buf.as_slices();
        let from_front = n.min(front.len());
        buf.extend_from_slice(&front[..from_front]);
        buf.extend_from_slice(&back[..n - from_front]);
        d.buf.drain(..n);
        if let Some(w) = d.writer.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let mut d = lock(&self.write);
        match write_into(&mut d, bufs, Some(cx)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            other => Poll::Ready(other),
        }
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        close_write(&self.write);
        Poll::Ready(Ok(()))
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        close_write(&self.write);
        let mut d = lock(&self.read);
        d.read_closed = true;
        d.buf = VecDeque::new();
        if let Some(w) = d.writer.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stop_at_capacity_and_resume_after_a_read() {
        let (mut a, mut b) = pipe(8);
        assert_eq!(a.try_write(b"0123456789").unwrap(), 8);
        assert_eq!(a.try_write(b"x").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let mut out = Vec::new();
        assert_eq!(b.try_read(&mut out).unwrap(), 8);
        assert_eq!(out, b"01234567");
        assert_eq!(a.try_write(b"89").unwrap(), 2);
    }

    #[test]
    fn fin_after_the_data_and_reset_when_the_reader_is_gone() {
        let (mut a, mut b) = pipe(64);
        a.try_write(b"hi").unwrap();
        a.shutdown_write();
        let mut out = Vec::new();
        assert_eq!(b.try_read(&mut out).unwrap(), 2);
        assert_eq!(b.try_read(&mut out).unwrap(), 0);
        drop(a);
        assert_eq!(b.try_write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_hold_delays_delivery_until_released() {
        let (mut a, mut b) = pipe(64);
        a.hold();
        a.try_write(b"hi").unwrap();
        let mut out = Vec::new();
        assert_eq!(b.try_read(&mut out).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        a.release();
        assert_eq!(b.try_read(&mut out).unwrap(), 2);
    }
}
