//! Issue 10, reads sized by what arrived, not what was announced: a frame
//! header or a Content-Length announcing a megabyte holds little memory
//! until the bytes come, and on async-std a read costs what it reads (not
//! a memset of the buffer's whole spare capacity).
//!
//! Memory is observed with a counting allocator (this binary's own), so
//! the tests that measure it run one at a time.

// Each test runs on its own thread's `block_on`: holding the serializing
// lock across its awaits is the point.
#![allow(clippy::await_holding_lock)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use blaze_async_std::{Accept, Accepted, App, Callbacks, Response};
use futures_io::{AsyncRead, AsyncWrite};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One test at a time: they read a process-wide counter.
static SERIAL: Mutex<()> = Mutex::new(());

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Memory held right after sending `stall` and waiting for the server to
/// take it in: more than a read buffer's worth means the server reserved
/// for what was announced. A thread's read scratch (64 KiB, made once per
/// thread) may be first touched in between: the bound allows for two.
const HELD_BOUND: isize = 160 * 1024;

async fn serve(app: &App) -> SocketAddr {
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    async_std::task::spawn(async move { app.serve(listener).await });
    addr
}

fn ws_handshake(stream: &mut TcpStream, path: &str) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
}

/// The 14-byte header of a masked binary frame of `len` bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut out = vec![0x82, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0x37, 0xfa, 0x21, 0x3d]);
    out
}

fn echo_app() -> App {
    let app = App::new();
    app.config(blaze_async_std::WsConfig::default().max_message_size(2 << 20).max_frame_size(2 << 20));
    app.ws("/echo", Callbacks::new().on_binary(|ws, data| {
        let _ = ws.send_binary(data);
    }));
    app.post("/upload", |req| Response::text(200, format!("{} bytes", req.body.len())));
    app
}

/// Waits for the server to settle, and returns what it holds.
async fn settled() -> isize {
    async_std::task::sleep(Duration::from_millis(300)).await;
    live()
}

#[async_std::test]
async fn announced_frame_reserves_only_what_arrived() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let addr = serve(&echo_app()).await;
    let mut stream = TcpStream::connect(addr).unwrap();
    ws_handshake(&mut stream, "/echo");
    let before = settled().await;
    stream.write_all(&frame_header(1 << 20)).unwrap();
    let held = settled().await - before;
    assert!(held < HELD_BOUND, "a 14-byte header announcing 1 MiB made the server hold {held} more bytes");
    // The frame still arrives whole and is echoed.
    let payload = vec![7u8; 1 << 20];
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let masked: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
    stream.write_all(&masked).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 10];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[..2], [0x82, 127]);
    assert_eq!(u64::from_be_bytes(head[2..].try_into().unwrap()), 1 << 20);
    let mut echoed = vec![0u8; 1 << 20];
    stream.read_exact(&mut echoed).unwrap();
    assert!(echoed == payload);
}

#[async_std::test]
async fn announced_http_body_reserves_only_what_arrived() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let addr = serve(&echo_app()).await;
    let mut stream = TcpStream::connect(addr).unwrap();
    let before = settled().await;
    // `Connection: close`: the response is read to EOF.
    write!(stream, "POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000000\r\n\r\n").unwrap();
    let held = settled().await - before;
    assert!(held < HELD_BOUND, "a request announcing a 1 MB body made the server hold {held} more bytes");
    // The body still arrives whole.
    stream.write_all(&vec![b'x'; 1_000_000]).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("1000000 bytes"), "{response}");
}

/// A TCP stream that hands the reader at most one byte per read: the
/// peer's bytes as 1-byte segments, every time.
struct OneByteReads(async_std::net::TcpStream);

impl AsyncRead for OneByteReads {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let one = buf.len().min(1);
        Pin::new(&mut self.0).poll_read(cx, &mut buf[..one])
    }
}

impl AsyncWrite for OneByteReads {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

struct OneByteListener(async_std::net::TcpListener);

impl Accept for OneByteListener {
    type Stream = OneByteReads;
    async fn accept(&mut self) -> std::io::Result<Accepted<OneByteReads>> {
        let (stream, remote) = self.0.accept().await?;
        let _ = stream.set_nodelay(true);
        let local_addr = stream.local_addr().ok();
        Ok(Accepted { io: OneByteReads(stream), remote_addr: Some(remote), local_addr })
    }
}

#[async_std::test]
async fn one_byte_segments_are_read_in_linear_time() {
    const LEN: usize = 256 * 1024;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let app = echo_app();
    // A server tuned for throughput: large read buffers. Zeroing the spare
    // capacity on every read made each 1-byte read cost a multi-MiB memset
    // (about 15 s for this message on a debug build; about 0.5 s now).
    app.config(
        blaze_async_std::WsConfig::default()
            .max_message_size(2 << 20)
            .max_frame_size(2 << 20)
            .read_buffer_size(4 << 20),
    );
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = app.clone();
    async_std::task::spawn(async move { server.serve(OneByteListener(listener)).await });
    let took = async_std::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        ws_handshake(&mut stream, "/echo");
        let payload: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut frame = frame_header(LEN as u64);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let started = Instant::now();
        stream.write_all(&frame).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = [0u8; 10];
        stream.read_exact(&mut head).unwrap();
        let mut echoed = vec![0u8; LEN];
        stream.read_exact(&mut echoed).unwrap();
        assert!(echoed == payload, "echo differs");
        started.elapsed()
    })
    .await;
    eprintln!("{LEN} one-byte reads took {took:?}");
    assert!(took < Duration::from_secs(BOUND_SECS), "{LEN} one-byte reads took {took:?}");
}

/// Generous for a loaded machine (about 0.5 s here, debug build).
const BOUND_SECS: u64 = 10;
