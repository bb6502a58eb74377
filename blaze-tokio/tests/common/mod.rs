//! Shared harness: a Blaze app served on a loopback port, and a
//! `tungstenite` client (not ours) running on a blocking thread.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use blaze_tokio::App;
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
