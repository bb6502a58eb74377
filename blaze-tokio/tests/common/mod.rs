//! Shared harness: a Blaze app served on a loopback port, and a
//! `tungstenite` client (not ours) running on a blocking thread.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use blaze_tokio::{App, Message as BlazeMessage, WsStream};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub type Client = WebSocket<MaybeTlsStream<TcpStream>>;

/// Serves `app` on 127.0.0.1:0; returns its address and the serve task.
pub async fn serve(app: &App) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    let task = tokio::spawn(async move { app.serve(listener).await });
    (addr, task)
}

/// Connects a tungstenite client with a read timeout, so a test that
/// waits for something that never comes fails instead of hanging.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    let (client, _response) = tungstenite::connect(format!("ws://{addr}{path}")).expect("handshake");
    set_timeout(&client, Duration::from_secs(5));
    client
}

pub fn set_timeout(client: &Client, timeout: Duration) {
    if let MaybeTlsStream::Plain(stream) = client.get_ref() {
        stream.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// Connects and expects an HTTP rejection; returns its status and body.
pub fn connect_rejected(addr: SocketAddr, path: &str) -> (u16, String) {
    match tungstenite::connect(format!("ws://{addr}{path}")) {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            (response.status().as_u16(), body)
        }
        Ok(_) => panic!("expected a rejection, got a connection"),
        Err(other) => panic!("expected an HTTP rejection, got {other}"),
    }
}

/// Reads the next data message, answering pings along the way (tungstenite does).
pub fn next_text(client: &mut Client) -> String {
    loop {
        match client.read().expect("read") {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame; returns its code and reason.
pub fn expect_close(client: &mut Client) -> (u16, String) {
    loop {
        match client.read() {
            Ok(Message::Close(Some(frame))) => return (u16::from(frame.code), frame.reason.to_string()),
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => continue,
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

pub fn close_code(code: u16) -> CloseCode {
    CloseCode::from(code)
}

/// Sends a raw HTTP request and returns the status line and the whole
/// response: up to EOF, or to the end of its `Content-Length` body when
/// the server keeps the connection alive (plain HTTP routes do).
pub fn raw_http(addr: SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0; 4096];
    while !kept_alive_response_complete(&bytes) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

/// Whether `bytes` hold a whole response that says `Connection: keep-alive`.
fn kept_alive_response_complete(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    head.lines().any(|l| l.starts_with("connection:") && l.contains("keep-alive"))
        && length.is_some_and(|length| bytes.len() >= end + 4 + length)
}

/// Runs blocking client code off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client thread panicked")
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// How long a Blaze client waits for the next message before the test fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// `ws.recv()`, failing the test (with the caller's line) when nothing
/// arrives within [`RECV_TIMEOUT`]: a lost message fails in seconds
/// instead of hanging the test run.
#[track_caller]
pub fn recv_within(ws: &mut WsStream) -> impl std::future::Future<Output = Option<BlazeMessage>> + '_ {
    recv_within_for(ws, RECV_TIMEOUT)
}

/// [`recv_within`] with an explicit timeout.
#[track_caller]
pub fn recv_within_for(
    ws: &mut WsStream,
    timeout: Duration,
) -> impl std::future::Future<Output = Option<BlazeMessage>> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(timeout, ws.recv()).await {
            Ok(message) => message,
            Err(_) => panic!("no message (nor the end of the connection) within {timeout:?}, awaited at {caller}"),
        }
    }
}

/// Makes sure this process may open `needed` file descriptors: a test
/// with 1,000 connections holds both ends of each (2,000 sockets), more
/// than the usual `ulimit -n` of 1024. Raises the soft limit to the hard
/// one if that is enough; otherwise fails at once with what to do,
/// instead of failing later with an obscure "Too many open files".
#[cfg(unix)]
pub fn ensure_fd_limit(needed: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        panic!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    }
    if limit.rlim_cur as u64 >= needed {
        return;
    }
    assert!(
        limit.rlim_max as u64 >= needed,
        "this test needs {needed} file descriptors but the hard limit is {}: raise it (e.g. `ulimit -Hn {needed}` as root, \
         or in /etc/security/limits.conf) and run again",
        limit.rlim_max
    );
    let soft = limit.rlim_cur;
    // The hard limit itself (it may be RLIM_INFINITY, which some systems
    // refuse as a soft limit: then just what the test needs).
    for target in [limit.rlim_max, needed as libc::rlim_t] {
        let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit (the hard limit unchanged).
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return;
        }
    }
    panic!(
        "this test needs {needed} file descriptors, the soft limit is {soft} and raising it failed ({}): run `ulimit -n {needed}` first",
        std::io::Error::last_os_error()
    );
}

#[cfg(not(unix))]
pub fn ensure_fd_limit(_needed: u64) {}

// ---- Raw WebSocket helpers (added for the coverage_* tests) -------------

/// Serves `app` on 127.0.0.1:0 with a fixed kernel send buffer per
/// connection (inherited from the listening socket), so a stalled
/// reader's backlog stays in Blaze's queue instead of the kernel's.
pub async fn serve_with_sndbuf(app: &App, sndbuf: u32) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(sndbuf).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    let task = tokio::spawn(async move { app.serve(listener).await });
    (addr, task)
}

/// Opens a WebSocket by hand (blocking; call from `blocking`), optionally
/// with a small kernel receive buffer, sending `extra_headers` (each line
/// ending in `\r\n`). Reads exactly the response head, so no frame sent
/// right after the 101 is consumed. Panics unless the answer is a 101.
pub fn raw_ws_connect(addr: SocketAddr, path: &str, rcvbuf: Option<u32>, extra_headers: &str) -> TcpStream {
    use std::io::{Read, Write};
    let mut stream = connect_with_rcvbuf(addr, rcvbuf).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "expected a 101, got {}", String::from_utf8_lossy(&head));
    stream
}

/// Connects a blocking std TCP stream, with its receive buffer set before
/// connecting (tokio's `TcpSocket` can; a throwaway runtime connects).
fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: Option<u32>) -> std::io::Result<TcpStream> {
    let Some(rcvbuf) = rcvbuf else { return TcpStream::connect(addr) };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_recv_buffer_size(rcvbuf)?;
    let stream = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async { socket.connect(addr).await?.into_std() })?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// A client frame (masked, as RFC 6455 §5.3 requires): `opcode` 1 text,
/// 2 binary, 0 continuation, 8 close, 9 ping, 10 pong.
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads server frames from a raw stream.
pub struct RawFrames {
    pub stream: TcpStream,
    decoder: blaze_proto::frame::FrameDecoder,
    buf: blaze_proto::bytes::BytesMut,
}

/// A frame a server sent: opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong), FIN, payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub opcode: u8,
    pub fin: bool,
    pub payload: Vec<u8>,
}

impl RawFrames {
    /// Reads from `stream`, each read waiting at most `timeout`.
    pub fn new(stream: TcpStream, timeout: Duration) -> RawFrames {
        stream.set_read_timeout(Some(timeout)).unwrap();
        RawFrames {
            stream,
            decoder: blaze_proto::frame::FrameDecoder::new(blaze_proto::Role::Client, usize::MAX),
            buf: blaze_proto::bytes::BytesMut::new(),
        }
    }

    /// The next frame; `Err` with what happened if the stream ended,
    /// failed or timed out first.
    pub fn next(&mut self) -> Result<RawFrame, String> {
        use std::io::Read;
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).map_err(|e| format!("invalid frame: {e}"))? {
                return Ok(RawFrame {
                    opcode: frame.header.opcode.as_u8(),
                    fin: frame.header.fin,
                    payload: frame.payload.to_vec(),
                });
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("EOF".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// Reads frames until a close frame; returns its code (1005 if empty).
    pub fn until_close(&mut self) -> Result<u16, String> {
        loop {
            let frame = self.next()?;
            if frame.opcode == 8 {
                return Ok(if frame.payload.len() >= 2 {
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                } else {
                    1005
                });
            }
        }
    }
}

// ---- a counting allocator, for tests that bound the server's memory ----

/// Counts live and peak heap bytes. A test binary that bounds memory
/// installs it with `#[global_allocator] static A: Counting = Counting;`
/// and reads [`LIVE`] and [`PEAK`].
pub struct Counting;

pub static LIVE: AtomicUsize = AtomicUsize::new(0);
pub static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        std::alloc::System.dealloc(ptr, layout)
    }
}
