//! Hardening of the HTTP phase and of deadlines (issue 10), over real
//! loopback sockets: request smuggling through duplicate or body headers
//! is 400, response headers cannot be split, durations near
//! `Duration::MAX` never overflow `Instant`, and a panicking guard or
//! origin check is a 500 that leaves the server serving.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{guard, App, Callbacks, Response, WsConfig};
use common::*;
use tungstenite::Message;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A request as a browser sends it, with `extra` header lines (each ending
/// in CRLF) inserted before the blank line.
fn browser_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, Upgrade\r\nPragma: no-cache\r\n\
         Cache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\nUpgrade: websocket\r\n\
         Origin: http://127.0.0.1\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n\
         Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n{extra}\r\n"
    )
}

/// Sends `request` and reads the response head only (a 101 leaves the
/// connection open, so reading to the end would wait for the timeout).
fn response_head(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_headers_on_an_upgrade_are_400_and_a_browser_upgrade_is_101() {
    let app = App::new();
    app.ws("/ws", Callbacks::new());
    let (addr, _server) = serve(&app).await;
    let cases = [
        ("duplicate Host", "Host: evil.example\r\n"),
        ("duplicate Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"),
        ("duplicate Sec-WebSocket-Key, same value", &format!("sec-websocket-key: {KEY}\r\n")),
        ("duplicate Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\n"),
        ("Content-Length", "Content-Length: 5\r\n"),
        ("Content-Length: 0", "Content-Length: 0\r\n"),
        ("Transfer-Encoding", "Transfer-Encoding: chunked\r\n"),
    ];
    for (what, extra) in cases {
        let request = browser_request("/ws", extra);
        let (status, response) = blocking(move || raw_http(addr, &request)).await;
        assert_eq!(status, 400, "{what}: {response}");
    }
    // With a body the proxy would forward, the bytes after the head are
    // never read as frames: the answer is still only the 400.
    let request = browser_request("/ws", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n";
    let (status, response) = blocking(move || raw_http(addr, &request)).await;
    assert_eq!(status, 400, "{response}");
    assert_eq!(response.matches("HTTP/1.1").count(), 1, "{response}");

    let request = browser_request("/ws", "");
    let (status, head) = blocking(move || response_head(addr, &request)).await;
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_cannot_inject_response_headers() {
    let app = App::new();
    app.ws("/ws", Callbacks::new()).guard(guard(|_req, _| {
        let mut response = Response::text(401, "no").header("X-Reason", "bad\r\nSet-Cookie: via-header=1");
        response.headers.push(("Location".into(), "/\r\nSet-Cookie: via-field=1".into()));
        response.headers.push(("X-Evil\r\nSet-Cookie".into(), "via-name=1".into()));
        Err(response.header("X-Fine", "yes"))
    }));
    let (addr, _server) = serve(&app).await;
    let request = browser_request("/ws", "");
    let (status, response) = blocking(move || raw_http(addr, &request)).await;
    assert_eq!(status, 401, "{response}");
    assert!(response.contains("X-Fine: yes\r\n"), "{response}");
    assert!(!response.contains("Set-Cookie"), "{response}");
    assert!(!response.contains("Location"), "{response}");
    assert!(response.ends_with("\r\n\r\nno"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_near_max_never_overflow_and_close_cleanly() {
    let app = App::new();
    let closes: Arc<Mutex<Vec<u16>>> = Arc::default();
    let config = WsConfig::default()
        .ping_interval(Some(Duration::MAX))
        .pong_timeout(Duration::MAX)
        .close_timeout(Duration::MAX)
        .idle_timeout(Some(Duration::MAX))
        .handshake_timeout(Duration::MAX);
    let recorded = closes.clone();
    app.ws_with_config(
        "/max",
        config,
        Callbacks::new()
            .on_message(|ws, text| {
                if &*text == "server closes" {
                    let _ = ws.close(1000, "bye");
                } else {
                    let _ = ws.send(text);
                }
            })
            .on_close(move |_ws, code, _reason| recorded.lock().unwrap().push(code)),
    );
    let (addr, _server) = serve(&app).await;

    // The client closes.
    blocking(move || {
        let mut client = connect(addr, "/max");
        client.send(Message::text("hello")).unwrap();
        assert_eq!(next_text(&mut client), "hello");
        client.close(None).unwrap();
        loop {
            match client.read() {
                Ok(Message::Close(_)) => continue,
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("no clean close: {e}"),
            }
        }
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || closes.lock().unwrap().len() == 1).await);
    assert_eq!(*closes.lock().unwrap(), [1005]);

    // The server closes (arming the close-handshake deadline).
    blocking(move || {
        let mut client = connect(addr, "/max");
        client.send(Message::text("echo")).unwrap();
        assert_eq!(next_text(&mut client), "echo");
        client.send(Message::text("server closes")).unwrap();
        assert_eq!(expect_close(&mut client), (1000, "bye".to_owned()));
        // Answer the close (tungstenite queued the reply) and wait for the end.
        loop {
            match client.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("no clean close: {e}"),
            }
        }
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || closes.lock().unwrap().len() == 2).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*closes.lock().unwrap(), [1005, 1000], "on_close exactly once per connection");

    // The server still serves (no task died on an overflow).
    let mut client = blocking(move || connect(addr, "/max")).await;
    let echoed = blocking(move || {
        client.send(Message::text("still here")).unwrap();
        next_text(&mut client)
    })
    .await;
    assert_eq!(echoed, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_guard_is_500_and_the_server_goes_on() {
    let app = App::new();
    let opens = Arc::new(AtomicUsize::new(0));
    app.ws("/boom", Callbacks::new()).guard(guard(|_req, _| panic!("guard exploded")));
    let counted = opens.clone();
    app.ws(
        "/ok",
        Callbacks::new()
            .on_open(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .on_message(|ws, text| {
                let _ = ws.send(text);
            }),
    )
    .guard(guard(|_req, _| Ok(())));
    let (addr, _server) = serve(&app).await;
    for _ in 0..2 {
        let (status, body) = blocking(move || connect_rejected(addr, "/boom")).await;
        assert_eq!((status, body.as_str()), (500, "internal server error"));
    }
    let echoed = blocking(move || {
        let mut client = connect(addr, "/ok");
        client.send(Message::text("fine")).unwrap();
        next_text(&mut client)
    })
    .await;
    assert_eq!(echoed, "fine");
    assert_eq!(opens.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_guard_on_an_http_route_is_500() {
    let app = App::new();
    app.get("/boom", |_req| Response::text(200, "unreachable")).guard(guard(|_req, _| panic!("guard exploded")));
    app.get("/ok", |_req| Response::text(200, "fine"));
    let (addr, _server) = serve(&app).await;
    let (status, response) = blocking(move || raw_http(addr, "GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")).await;
    assert_eq!(status, 500, "{response}");
    let (status, response) = blocking(move || raw_http(addr, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")).await;
    assert_eq!((status, response.ends_with("fine")), (200, true), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_origin_check_is_500_and_the_server_goes_on() {
    let app = App::new();
    app.ws_with_config(
        "/boom",
        WsConfig::default().check_origin(|_req| panic!("origin check exploded")),
        Callbacks::new(),
    );
    app.ws_with_config(
        "/ok",
        WsConfig::default().check_origin(|_req| true),
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.send(text);
        }),
    );
    let (addr, _server) = serve(&app).await;
    for _ in 0..2 {
        let (status, body) = blocking(move || connect_rejected(addr, "/boom")).await;
        assert_eq!((status, body.as_str()), (500, "internal server error"));
    }
    let echoed = blocking(move || {
        let mut client = connect(addr, "/ok");
        client.send(Message::text("fine")).unwrap();
        next_text(&mut client)
    })
    .await;
    assert_eq!(echoed, "fine");
}
