//! The queue of bytes waiting to be written, built for corking: small
//! frames are appended to one growing buffer, shared frames (broadcasts,
//! large payloads) are queued by reference, and the driver writes it all
//! with one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Unsent output, boxed and made on the first frame: an idle connection
/// holds 8 bytes of it, not the ~150 of the queues and their counters
/// (BENCHMARKS.md, "Idle connections"). Freed again by
/// [`Outbound::release_if_empty`] once nothing is unsent or unaccounted.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    queue: Option<Box<Queue>>,
    /// The queue's unsent bytes, kept here too: every send and every
    /// round of the driver asks, and this answers without the box.
    pending: usize,
}

/// Unsent output: `chunks` in order, then `tail`. Frame boundaries are kept
/// as absolute stream offsets so unsent frames can be discarded without
/// cutting one that is half written.
#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    /// Absolute offset (bytes ever queued) where each queued frame ends;
    /// [`DATA_FRAME`] set on the frames of messages (not control frames).
    frame_ends: VecDeque<u64>,
    /// Message frames ever queued and their bytes, and how many of those
    /// were written whole: the difference is what was accepted and has not
    /// (yet) reached the transport (see [`Outbound::unsent`]).
    data_queued: u64,
    data_queued_bytes: u64,
    data_written: u64,
    data_written_bytes: u64,
    queued_total: u64,
    written_total: u64,
    /// Where the last fully written frame ended.
    completed_end: u64,
}

/// Frames smaller than this are copied into the tail buffer; larger ones
/// are queued by reference (copying 16 KiB costs about what an iovec does).
pub(crate) const COPY_THRESHOLD: usize = 16 * 1024;

/// Marks a frame end as a message's (offsets stay far below 2^63).
const DATA_FRAME: u64 = 1 << 63;

impl Outbound {
    #[inline]
    fn queue(&mut self) -> &mut Queue {
        super::lazy::boxed(&mut self.queue)
    }

    /// Unsent bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.pending
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Appends a frame with `encode`, which writes it to the tail buffer.
    pub(crate) fn push_encoded(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        let q = self.queue();
        q.push_encoded(encode);
        self.pending = q.len();
    }

    /// Appends a frame whose header is encoded by `header` and whose payload
    /// is shared, not copied.
    pub(crate) fn push_with_shared_payload(&mut self, header: impl FnOnce(&mut BytesMut), payload: Bytes) {
        let q = self.queue();
        q.push_with_shared_payload(header, payload);
        self.pending = q.len();
    }

    /// Appends an already-encoded frame shared with other connections.
    pub(crate) fn push_shared(&mut self, frame: &Bytes) {
        let q = self.queue();
        q.push_shared(frame);
        self.pending = q.len();
    }

    /// Appends frames shared with other connections, already joined into
    /// one buffer (`lens`: each frame's length, in order), each counted as
    /// a message of its own.
    pub(crate) fn push_shared_frames(&mut self, frames: &Bytes, lens: impl ExactSizeIterator<Item = usize>) {
        let q = self.queue();
        q.push_shared_frames(frames, lens);
        self.pending = q.len();
    }

    /// Marks the frame just queued as a message's.
    pub(crate) fn mark_data(&mut self) {
        if let Some(q) = self.queue.as_mut() {
            q.mark_data();
        }
    }

    /// Messages queued and not yet written whole, and their bytes.
    pub(crate) fn unsent(&self) -> (u64, u64) {
        self.queue.as_ref().map_or((0, 0), |q| q.unsent())
    }

    /// Drops everything unsent; the counts of [`Outbound::unsent`] are kept.
    pub(crate) fn clear(&mut self) {
        if let Some(q) = self.queue.as_mut() {
            q.clear();
        }
        self.pending = 0;
    }

    /// Frees the queue (and what its buffers grew to) if nothing is unsent:
    /// its offsets and counts then start again from zero, which changes no
    /// answer `len` or `unsent` gives.
    pub(crate) fn release_if_empty(&mut self) {
        if self.is_empty() && self.unsent() == (0, 0) {
            self.queue = None;
        }
    }

    /// Fills `out` with the unsent bytes in order.
    pub(crate) fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.queue.as_ref().map_or(0, |q| q.slices(out))
    }

    /// The first unsent bytes.
    pub(crate) fn first_slice(&self) -> &[u8] {
        self.queue.as_ref().map_or(&[], |q| q.first_slice())
    }

    /// Marks `n` bytes as written.
    pub(crate) fn advance(&mut self, n: usize) {
        if let Some(q) = self.queue.as_mut() {
            q.advance(n);
            self.pending = q.len();
        }
    }

    /// Drops every frame not yet started; returns the bytes dropped.
    pub(crate) fn discard_unstarted(&mut self) -> usize {
        let Some(q) = self.queue.as_mut() else { return 0 };
        let dropped = q.discard_unstarted();
        self.pending = q.len();
        dropped
    }
}

impl Queue {
    /// Unsent bytes.
    fn len(&self) -> usize {
        (self.queued_total - self.written_total) as usize
    }

    /// Appends a frame with `encode`, which writes it to the tail buffer.
    fn push_encoded(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        let before = self.tail.len();
        encode(&mut self.tail);
        self.end_frame((self.tail.len() - before) as u64);
    }

    /// Appends a frame whose header is encoded by `header` and whose payload
    /// is shared, not copied.
    fn push_with_shared_payload(&mut self, header: impl FnOnce(&mut BytesMut), payload: Bytes) {
        let before = self.tail.len();
        header(&mut self.tail);
        let header_len = self.tail.len() - before;
        self.seal_tail();
        let len = payload.len();
        if len > 0 {
            self.chunks.push_back(payload);
        }
        self.end_frame((header_len + len) as u64);
    }

    /// Appends an already-encoded frame shared with other connections.
    /// Borrowed: a tiny frame is copied without touching its reference
    /// count. (A clone and drop per receiver were two locked instructions
    /// on one shared counter; each waits for the previous receiver's cache
    /// misses, and together they were 22-37% of a 10,000-subscriber fan-out.)
    fn push_shared(&mut self, frame: &Bytes) {
        let len = frame.len() as u64;
        if frame.len() < 256 {
            // Tiny frames cost less copied than as an iovec of their own.
            self.tail.extend_from_slice(frame);
        } else {
            self.seal_tail();
            self.chunks.push_back(frame.clone());
        }
        self.end_frame(len);
    }

    /// Appends frames shared with other connections, already joined into
    /// one buffer (`lens`: each frame's length, in order, summing to
    /// `frames.len()`): one chunk for all of them, each still counted as a
    /// frame of its own by [`Outbound::unsent`] and the discards.
    fn push_shared_frames(&mut self, frames: &Bytes, lens: impl ExactSizeIterator<Item = usize>) {
        if frames.len() < 256 {
            self.tail.extend_from_slice(frames);
        } else {
            self.seal_tail();
            self.chunks.push_back(frames.clone());
        }
        // What `end_frame` and `mark_data` do per frame, in one pass.
        self.frame_ends.reserve(lens.len());
        let start = self.queued_total;
        let mut end = start;
        let mut count = 0;
        for len in lens {
            end += len as u64;
            self.frame_ends.push_back(end | DATA_FRAME);
            count += 1;
        }
        debug_assert_eq!(end - start, frames.len() as u64, "lens must cover the frames");
        self.queued_total = end;
        self.data_queued += count;
        self.data_queued_bytes += end - start;
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    fn end_frame(&mut self, len: u64) {
        self.queued_total += len;
        self.frame_ends.push_back(self.queued_total);
    }

    /// Marks the frame just queued as a message's, so it is counted by
    /// [`Outbound::unsent`] until written whole.
    fn mark_data(&mut self) {
        if self.frame_ends.is_empty() {
            return;
        }
        self.data_queued += 1;
        self.data_queued_bytes += self.last_frame_len();
        if let Some(end) = self.frame_ends.back_mut() {
            *end |= DATA_FRAME;
        }
    }

    fn last_frame_len(&self) -> u64 {
        let n = self.frame_ends.len();
        let end = self.frame_ends[n - 1] & !DATA_FRAME;
        let start = if n >= 2 { self.frame_ends[n - 2] & !DATA_FRAME } else { self.completed_end };
        end - start
    }

    /// Messages queued and not yet written whole, and their bytes (frame
    /// headers included). Once the connection is finished, these never
    /// will be: they were lost.
    fn unsent(&self) -> (u64, u64) {
        (self.data_queued - self.data_written, self.data_queued_bytes - self.data_written_bytes)
    }

    /// Drops everything unsent (the transport is gone); the counts of
    /// [`Outbound::unsent`] are kept.
    fn clear(&mut self) {
        *self = Queue {
            data_queued: self.data_queued,
            data_queued_bytes: self.data_queued_bytes,
            data_written: self.data_written,
            data_written_bytes: self.data_written_bytes,
            ..Queue::default()
        };
    }

    /// Fills `out` with the unsent bytes in order; returns how many slices
    /// it filled.
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let parts = self.chunks.iter().map(|c| &c[..]).chain(std::iter::once(&self.tail[..]));
        let mut n = 0;
        for part in parts.filter(|p| !p.is_empty()) {
            if n == out.len() {
                break;
            }
            out[n] = IoSlice::new(part);
            n += 1;
        }
        n
    }

    /// The first unsent bytes, for drivers that write one slice at a time.
    fn first_slice(&self) -> &[u8] {
        self.chunks.front().map(|c| &c[..]).unwrap_or(&self.tail[..])
    }

    /// Marks `n` bytes as written.
    fn advance(&mut self, mut n: usize) {
        n = n.min(self.len());
        self.written_total += n as u64;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= n => {
                    n -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    n = 0;
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        // Frames now written whole: counted in one pass (a corked
        // broadcast batch completes a hundred at once), then dropped.
        let mut done = 0;
        let mut completed = self.completed_end;
        for &tagged in &self.frame_ends {
            let end = tagged & !DATA_FRAME;
            if end > self.written_total {
                break;
            }
            let data = tagged >> 63;
            self.data_written += data;
            self.data_written_bytes += (end - completed) * data;
            completed = end;
            done += 1;
        }
        self.completed_end = completed;
        self.frame_ends.drain(..done);
        if self.tail.is_empty() && self.tail.capacity() > 64 * 1024 {
            // Do not let one burst pin a large buffer on an idle connection.
            self.tail = BytesMut::new();
        }
    }

    /// Drops every frame not yet started; a frame half written is kept
    /// whole so the stream stays well framed. Returns the bytes dropped.
    fn discard_unstarted(&mut self) -> usize {
        // Frames are contiguous, so the front frame starts where the last
        // fully written one ended.
        let front_started = self.written_total > self.completed_end;
        let keep_until = match self.frame_ends.front() {
            Some(&end) if front_started => end & !DATA_FRAME,
            _ => self.written_total,
        };
        let keep = (keep_until - self.written_total) as usize;
        let dropped = self.len() - keep;
        let mut kept = VecDeque::new();
        let mut remaining = keep;
        let tail = self.tail.split().freeze();
        for mut part in self.chunks.drain(..).chain(std::iter::once(tail)) {
            if remaining == 0 {
                break;
            }
            part.truncate(remaining);
            remaining -= part.len();
            kept.push_back(part);
        }
        self.chunks = kept;
        self.tail = BytesMut::new();
        self.queued_total = keep_until;
        self.frame_ends.retain(|&end| end & !DATA_FRAME <= keep_until);
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(out: &Outbound) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 16];
        let n = out.slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn released_when_empty_and_accounted() {
        let mut out = Outbound::default();
        assert!(out.queue.is_none());
        out.push_encoded(|b| b.extend_from_slice(b"ab"));
        out.mark_data();
        out.release_if_empty();
        assert_eq!(out.unsent(), (1, 2), "kept while unsent");
        out.advance(2);
        out.release_if_empty();
        assert!(out.queue.is_none());
        assert_eq!((out.len(), out.unsent()), (0, (0, 0)));
        out.push_encoded(|b| b.extend_from_slice(b"cd"));
        out.mark_data();
        out.clear();
        out.release_if_empty();
        assert_eq!(out.unsent(), (1, 2), "lost messages stay counted after clear");
    }

    #[test]
    fn small_and_shared_frames_come_out_in_order() {
        let mut out = Outbound::default();
        out.push_encoded(|b| b.extend_from_slice(b"ab"));
        out.push_shared(&Bytes::from(vec![b'x'; 300]));
        out.push_encoded(|b| b.extend_from_slice(b"cd"));
        let mut expect = b"ab".to_vec();
        expect.extend(vec![b'x'; 300]);
        expect.extend(b"cd");
        assert_eq!(contents(&out), expect);
        out.advance(5);
        assert_eq!(contents(&out), expect[5..]);
        assert_eq!(out.len(), expect.len() - 5);
    }

    #[test]
    fn discard_keeps_a_half_written_frame_whole() {
        let mut out = Outbound::default();
        out.push_encoded(|b| b.extend_from_slice(b"0123456789"));
        out.push_encoded(|b| b.extend_from_slice(b"abcdef"));
        out.advance(4);
        let dropped = out.discard_unstarted();
        assert_eq!(dropped, 6);
        assert_eq!(contents(&out), b"456789");
        out.push_encoded(|b| b.extend_from_slice(b"CLOSE"));
        assert_eq!(contents(&out), b"456789CLOSE");
    }

    #[test]
    fn unsent_counts_messages_until_written_whole() {
        let mut out = Outbound::default();
        out.push_encoded(|b| b.extend_from_slice(b"0123456789"));
        out.mark_data();
        out.push_encoded(|b| b.extend_from_slice(b"PING"));
        out.push_shared(&Bytes::from(vec![7u8; 300]));
        out.mark_data();
        assert_eq!(out.unsent(), (2, 310));
        out.advance(9);
        assert_eq!(out.unsent(), (2, 310), "a half-written frame has not reached the transport");
        out.advance(1);
        assert_eq!(out.unsent(), (1, 300));
        out.advance(4 + 100);
        // The discard keeps the started frame: it may still go out whole.
        assert_eq!(out.discard_unstarted(), 0);
        assert_eq!(out.unsent(), (1, 300));
        out.clear();
        assert_eq!(out.unsent(), (1, 300), "cleared by EOF: lost, and still counted");
    }

    #[test]
    fn discarded_messages_stay_unsent() {
        let mut out = Outbound::default();
        for _ in 0..3 {
            out.push_encoded(|b| b.extend_from_slice(b"abcd"));
            out.mark_data();
        }
        out.advance(6);
        assert_eq!(out.discard_unstarted(), 4);
        assert_eq!(out.unsent(), (2, 8));
        out.advance(2);
        assert_eq!(out.unsent(), (1, 4));
        assert!(out.is_empty());
    }

    #[test]
    fn joined_frames_count_one_by_one() {
        for size in [3usize, 200] {
            let mut out = Outbound::default();
            out.push_encoded(|b| b.extend_from_slice(b"ab"));
            let frames = Bytes::from(vec![b'x'; 2 * size]);
            out.push_shared_frames(&frames, [size, size].into_iter());
            assert_eq!(out.unsent(), (2, 2 * size as u64));
            let mut expect = b"ab".to_vec();
            expect.extend(vec![b'x'; 2 * size]);
            assert_eq!(contents(&out), expect);
            out.advance(2 + size + 1);
            assert_eq!(out.unsent(), (1, size as u64), "the first joined frame was written whole");
            assert_eq!(out.discard_unstarted(), 0, "the second is half written: kept whole");
            out.advance(size - 1);
            assert_eq!(out.unsent(), (0, 0));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn discard_with_nothing_started_drops_everything() {
        let mut out = Outbound::default();
        out.push_shared(&Bytes::from(vec![1u8; 1000]));
        out.push_encoded(|b| b.extend_from_slice(b"x"));
        assert_eq!(out.discard_unstarted(), 1001);
        assert!(out.is_empty());
    }
}
