//! Codec micro-benchmarks: Blaze's sans-io core against tungstenite 0.26's
//! codec, measured in the same run so the ratios are comparable even on a
//! noisy machine.
//!
//! Run with `cargo bench -p blaze-proto --bench codec`; results and how to
//! read them are in `BENCHMARKS.md` at the workspace root.
//!
//! Fairness notes:
//! - Frame decoding: the input `BytesMut` is filled in the (untimed) setup of
//!   `iter_batched`, so both sides time exactly "parse the header, split the
//!   payload off the buffer, unmask it in place, hand back an owned frame".
//!   For tungstenite that is the body of its crate-private
//!   `FrameCodec::read_frame` once the bytes are buffered: the public
//!   `FrameHeader::parse` on a `Cursor`, `split_to`, `apply_mask`,
//!   `Frame::from_payload`.
//! - tungstenite 0.26's `apply_mask` lives in a private module, so the copy
//!   below (`tungstenite_mask`) is its code verbatim (MIT/Apache-2.0).
//! - With `iter_batched` the outputs (decoded frames, handshake responses)
//!   are returned from the routine, so criterion drops them outside the
//!   timed region, for both sides alike. With `iter` (masking, UTF-8,
//!   encoding) both sides drop theirs inside it.
//!
//! Clock: the machine these numbers come from is a shared 2-vCPU VM where
//! other builds run at the same time, so on Linux the suite measures the
//! benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): time the thread
//! spends preempted is not counted. On an idle machine this equals wall
//! time for these single-threaded, syscall-free routines. Set
//! `BLAZE_BENCH_CLOCK=wall` for criterion's usual wall clock.

use std::hint::black_box;
use std::io::Cursor;
use std::time::{Duration, Instant};

use blaze_proto::bytes::{Buf, Bytes, BytesMut};
use blaze_proto::frame::{apply_mask, encode_frame, FrameDecoder, FrameHeader, OpCode, Role};
use blaze_proto::handshake::{HandshakeLimits, RequestReader, UpgradeRequest};
use blaze_proto::{validate_utf8, PreparedMessage, Utf8Validator};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request as TRequest};
use tungstenite::protocol::frame::coding::{Data as TData, OpCode as TOpCode};
use tungstenite::protocol::frame::{Frame as TFrame, FrameHeader as TFrameHeader};

/// tungstenite 0.26.2 `src/protocol/frame/mask.rs`, verbatim (the module is
/// private to the crate, so it cannot be called directly).
#[allow(unsafe_code)]
mod tungstenite_mask {
    #[inline]
    pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
        apply_mask_fast32(buf, mask);
    }

    #[inline]
    fn apply_mask_fallback(buf: &mut [u8], mask: [u8; 4]) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
    }

    #[inline]
    pub fn apply_mask_fast32(buf: &mut [u8], mask: [u8; 4]) {
        let mask_u32 = u32::from_ne_bytes(mask);

        let (prefix, words, suffix) = unsafe { buf.align_to_mut::<u32>() };
        apply_mask_fallback(prefix, mask);
        let head = prefix.len() & 3;
        let mask_u32 = if head > 0 {
            if cfg!(target_endian = "big") {
                mask_u32.rotate_left(8 * head as u32)
            } else {
                mask_u32.rotate_right(8 * head as u32)
            }
        } else {
            mask_u32
        };
        for word in words.iter_mut() {
            *word ^= mask_u32;
        }
        apply_mask_fallback(suffix, mask_u32.to_ne_bytes());
    }
}

/// Thread CPU time (Linux) or wall time, in nanoseconds; see the module docs.
struct Clock {
    cpu: bool,
    origin: Instant,
}

impl Clock {
    fn from_env() -> Clock {
        let cpu = cfg!(target_os = "linux") && std::env::var("BLAZE_BENCH_CLOCK").map_or(true, |v| v != "wall");
        eprintln!("codec bench clock: {}", if cpu { "thread CPU time" } else { "wall time" });
        Clock { cpu, origin: Instant::now() }
    }

    fn now_ns(&self) -> u64 {
        if self.cpu {
            thread_cpu_ns()
        } else {
            self.origin.elapsed().as_nanos() as u64
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: std::os::raw::c_long,
        tv_nsec: std::os::raw::c_long,
    }
    extern "C" {
        fn clock_gettime(clock: std::os::raw::c_int, tp: *mut Timespec) -> std::os::raw::c_int;
    }
    const CLOCK_THREAD_CPUTIME_ID: std::os::raw::c_int = 3;
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> u64 {
    unreachable!("the CPU clock is only selected on Linux")
}

impl Measurement for Clock {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        self.now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, exactly what the wall-time formatter expects.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

type C = Criterion<Clock>;

/// A payload of `len` bytes that is not all one value.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8).collect()
}

/// One client (masked) binary frame carrying `payload`.
fn masked_frame(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(FrameHeader::new(OpCode::Binary), payload, Some(key), &mut out);
    out.to_vec()
}

/// Blaze: decode one frame, server role.
#[inline]
fn blaze_decode(decoder: &mut FrameDecoder, buf: &mut BytesMut) -> Bytes {
    decoder.decode(buf).unwrap().unwrap().payload
}

/// tungstenite: what `FrameCodec::read_frame` does once the frame is
/// buffered (server role: `unmask = true`, `accept_unmasked = false`).
#[inline]
fn tungstenite_decode(buf: &mut BytesMut, max_size: usize) -> TFrame {
    let mut cursor = Cursor::new(&mut *buf);
    let (mut header, len) = TFrameHeader::parse(&mut cursor).unwrap().unwrap();
    let advanced = cursor.position();
    buf.advance(advanced as usize);
    let len = len as usize;
    assert!(len <= max_size && len <= buf.len());
    let mut payload = buf.split_to(len);
    let mask = header.mask.take().expect("client frames are masked");
    tungstenite_mask::apply_mask(&mut payload, mask);
    TFrame::from_payload(header, payload.freeze())
}

fn fmt_size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

/// Frames are timed in batches: large enough that reading the clock (a
/// ~240 ns syscall for the CPU clock) adds at most ~1.5% per frame, small
/// enough that the batch of input buffers stays in L2 (at most 2 MiB).
fn batch_for(len: usize) -> BatchSize {
    match len {
        0..=1024 => BatchSize::NumIterations(1024),
        1025..=65536 => BatchSize::NumIterations(16),
        _ => BatchSize::NumIterations(2),
    }
}

fn bench_decode_single(c: &mut C) {
    let mut group = c.benchmark_group("decode_unmask");
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for len in [16usize, 1 << 10, 64 << 10, 1 << 20] {
        let data = payload(len);
        let wire = masked_frame(&data, key);
        // Both sides must produce the same payload.
        assert_eq!(
            &blaze_decode(&mut FrameDecoder::new(Role::Server, usize::MAX), &mut BytesMut::from(&wire[..]))[..],
            &data[..]
        );
        assert_eq!(tungstenite_decode(&mut BytesMut::from(&wire[..]), usize::MAX).payload(), &data[..]);

        group.throughput(Throughput::Bytes(len as u64));
        let fill = || BytesMut::from(&wire[..]);
        group.bench_function(BenchmarkId::new("blaze", fmt_size(len)), |b| {
            let mut decoder = FrameDecoder::new(Role::Server, usize::MAX);
            b.iter_batched(fill, |mut buf| blaze_decode(&mut decoder, &mut buf), batch_for(len))
        });
        group.bench_function(BenchmarkId::new("tungstenite", fmt_size(len)), |b| {
            b.iter_batched(fill, |mut buf| tungstenite_decode(&mut buf, usize::MAX), batch_for(len))
        });
    }
    group.finish();
}

const SMALL_FRAMES: usize = 1000;
const SMALL_LEN: usize = 32;

fn bench_decode_many(c: &mut C) {
    let mut group = c.benchmark_group("decode_many_32B");
    let data = payload(SMALL_LEN);
    let mut wire = Vec::new();
    for i in 0..SMALL_FRAMES as u32 {
        wire.extend(masked_frame(&data, (i.wrapping_mul(0x9e37_79b9)).to_le_bytes()));
    }
    {
        let mut buf = BytesMut::from(&wire[..]);
        let mut decoder = FrameDecoder::new(Role::Server, usize::MAX);
        for _ in 0..SMALL_FRAMES {
            assert_eq!(&blaze_decode(&mut decoder, &mut buf)[..], &data[..]);
        }
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&wire[..]);
        for _ in 0..SMALL_FRAMES {
            assert_eq!(tungstenite_decode(&mut buf, usize::MAX).payload(), &data[..]);
        }
        assert!(buf.is_empty());
    }
    group.throughput(Throughput::Elements(SMALL_FRAMES as u64));
    let fill = || BytesMut::from(&wire[..]);
    group.bench_function("blaze", |b| {
        let mut decoder = FrameDecoder::new(Role::Server, usize::MAX);
        b.iter_batched(
            fill,
            |mut buf| {
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    black_box(frame.payload);
                }
                buf
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("tungstenite", |b| {
        b.iter_batched(
            fill,
            |mut buf| {
                while !buf.is_empty() {
                    black_box(tungstenite_decode(&mut buf, usize::MAX));
                }
                buf
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn naive_mask(buf: &mut [u8], key: [u8; 4]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

fn bench_mask(c: &mut C) {
    let mut group = c.benchmark_group("mask_64KiB");
    let key = [0xde, 0xad, 0xbe, 0xef];
    let len = 64 << 10;
    group.throughput(Throughput::Bytes(len as u64));
    // `aligned`: slice starts on an 8-byte boundary; `offset1`: one byte past.
    for (name, skew) in [("aligned", 0usize), ("offset1", 1)] {
        let mut backing = vec![0u8; len + 16];
        let start = backing.as_ptr().align_offset(8) + skew;
        {
            let mut a = payload(len);
            let mut b = a.clone();
            let mut c2 = a.clone();
            apply_mask(&mut a, key, 0);
            naive_mask(&mut b, key);
            tungstenite_mask::apply_mask(&mut c2, key);
            assert!(a == b && b == c2);
        }
        group.bench_function(BenchmarkId::new("blaze", name), |b| {
            b.iter(|| apply_mask(black_box(&mut backing[start..start + len]), black_box(key), 0))
        });
        group.bench_function(BenchmarkId::new("naive_loop", name), |b| {
            b.iter(|| naive_mask(black_box(&mut backing[start..start + len]), black_box(key)))
        });
        group.bench_function(BenchmarkId::new("tungstenite", name), |b| {
            b.iter(|| tungstenite_mask::apply_mask(black_box(&mut backing[start..start + len]), black_box(key)))
        });
    }
    group.finish();
}

/// About `len` bytes of mixed ASCII and 2-, 3- and 4-byte UTF-8.
fn mixed_text(len: usize) -> String {
    const PATTERN: &str = "The quick brown fox jumps over the lazy dog; über Größe, naïve café. \
        Привет, мир! Γειά σου κόσμε. 你好，世界。こんにちは 🚀🎉✓ {\"id\":42,\"ok\":true}\n";
    let mut s = String::with_capacity(len + PATTERN.len());
    while s.len() < len {
        s.push_str(PATTERN);
    }
    let mut cut = len;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn bench_utf8(c: &mut C) {
    let mut group = c.benchmark_group("utf8");
    for len in [1usize << 10, 64 << 10] {
        let text = mixed_text(len);
        let bytes = text.as_bytes();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let size = fmt_size(len);
        group.bench_function(BenchmarkId::new("blaze_validate_utf8", &size), |b| {
            b.iter(|| validate_utf8(black_box(bytes)))
        });
        group.bench_function(BenchmarkId::new("blaze_Utf8Validator", &size), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(bytes)) && v.is_complete()
            })
        });
        // tungstenite validates text with `std::str::from_utf8` (Utf8Bytes::try_from).
        group.bench_function(BenchmarkId::new("std_from_utf8", &size), |b| {
            b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok())
        });
    }
    group.finish();
}

/// A Chrome 12x upgrade request, as sent to a local server.
const CHROME_UPGRADE: &str = "GET /chat?room=lobby HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=3f9a1c2b7d4e8f60; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// Blaze: read the head, validate the upgrade, render the 101 (`Bytes`).
fn blaze_handshake(reader: &RequestReader, buf: &mut BytesMut) -> Bytes {
    let request = reader.read(buf).unwrap().unwrap();
    let upgrade = UpgradeRequest::validate(request).unwrap();
    upgrade.accept(None, None).to_bytes()
}

/// tungstenite: what `ServerHandshake` does with a complete head, without
/// the stream: `Request::try_parse`, `create_response`, `write_response`.
fn tungstenite_handshake(buf: &[u8]) -> Vec<u8> {
    let (_, request) = TRequest::try_parse(buf).unwrap().unwrap();
    let response = create_response(&request).unwrap();
    let mut out = Vec::with_capacity(256);
    write_response(&mut out, &response).unwrap();
    out
}

fn bench_handshake(c: &mut C) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Bytes(CHROME_UPGRADE.len() as u64));
    let reader = RequestReader::new(HandshakeLimits::default(), Instant::now());
    {
        let blaze =
            String::from_utf8(blaze_handshake(&reader, &mut BytesMut::from(CHROME_UPGRADE.as_bytes())).to_vec())
                .unwrap();
        let tung = String::from_utf8(tungstenite_handshake(CHROME_UPGRADE.as_bytes())).unwrap();
        for text in [&blaze, &tung] {
            assert!(text.starts_with("HTTP/1.1 101"), "{text}");
            assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
        }
    }
    group.bench_function("blaze", |b| {
        b.iter_batched(
            || BytesMut::from(CHROME_UPGRADE.as_bytes()),
            |mut buf| blaze_handshake(&reader, &mut buf),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("tungstenite", |b| b.iter(|| tungstenite_handshake(black_box(CHROME_UPGRADE.as_bytes()))));
    group.finish();
}

fn bench_encode(c: &mut C) {
    let mut group = c.benchmark_group("encode_text");
    for len in [32usize, 64 << 10] {
        let text: &'static str = Box::leak(mixed_text(len).into_boxed_str());
        let n = text.len();
        {
            let mut out = Vec::new();
            TFrame::message(Bytes::from_static(text.as_bytes()), TOpCode::Data(TData::Text), true)
                .format(&mut out)
                .unwrap();
            assert_eq!(&out[..], &PreparedMessage::text(text).frame()[..]);
        }
        group.throughput(Throughput::Bytes(n as u64));
        let size = fmt_size(len);
        group.bench_function(BenchmarkId::new("blaze_PreparedMessage", &size), |b| {
            b.iter(|| PreparedMessage::text(black_box(text)))
        });
        // tungstenite: frame a (zero-copy, static) payload into a fresh
        // buffer sized for it, and hand it out as `Bytes` like Blaze does.
        group.bench_function(BenchmarkId::new("tungstenite_Frame_format", &size), |b| {
            b.iter(|| {
                let frame =
                    TFrame::message(Bytes::from_static(black_box(text).as_bytes()), TOpCode::Data(TData::Text), true);
                let mut out = Vec::with_capacity(frame.len());
                frame.format(&mut out).unwrap();
                Bytes::from(out)
            })
        });
    }
    group.finish();
}

fn config() -> C {
    Criterion::default()
        .with_measurement(Clock::from_env())
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(25)
}

criterion_group! {
    name = codec;
    config = config();
    targets = bench_decode_single, bench_decode_many, bench_mask, bench_utf8, bench_handshake, bench_encode
}
criterion_main!(codec);
