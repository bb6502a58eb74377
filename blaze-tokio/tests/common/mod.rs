//! Shared harness: a Blaze app served on a loopback port, and a
//! `tungstenite` client (not ours) running on a blocking thread.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
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

/// Sends a raw HTTP request and returns the status line and the whole response.
pub fn raw_http(addr: SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
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
