//! Plain HTTP routes keep the connection alive (RFC 9112 §9.3), bounded by
//! a request count and an idle time, over real TCP with a raw client:
//! a page and its asset over one connection, pipelined requests answered
//! in order, `Connection: close` and HTTP/1.0 honoured, and a WebSocket
//! upgrade on a connection that served a page first.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks, Response, WsConfig};
use common::*;

fn app(config: WsConfig) -> App {
    let app = App::new();
    app.config(config);
    app.get("/", |_req| Response::with_body(200, "text/html", "<script src=/app.js></script>"));
    app.get("/app.js", |_req| Response::with_body(200, "text/javascript", "console.log(1)"));
    app.get("/bye", |_req| Response::text(200, "bye").header("Connection", "close"));
    app.ws(
        "/ws",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.send(text);
        }),
    );
    app
}

fn open(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(stream)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// One response: its status, `Connection` header and body (by Content-Length).
fn response(reader: &mut BufReader<TcpStream>) -> (u16, String, String) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{status_line:?}"));
    let (mut connection, mut length) = (String::new(), 0);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "connection" => connection = value.trim().to_owned(),
            "content-length" => length = value.trim().parse().unwrap(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (status, connection, String::from_utf8(body).unwrap())
}

/// The server closed: EOF (not a timeout) on the next read.
fn assert_closed(reader: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    let n = reader.read_to_end(&mut rest).expect("EOF, not a read timeout");
    assert_eq!(n, 0, "unexpected bytes: {:?}", String::from_utf8_lossy(&rest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_and_its_asset_load_over_one_connection() {
    let (addr, _server) = serve(&app(WsConfig::default())).await;
    blocking(move || {
        let mut conn = open(addr);
        conn.get_mut().write_all(get("/").as_bytes()).unwrap();
        let (status, connection, body) = response(&mut conn);
        assert_eq!((status, connection.as_str()), (200, "keep-alive"));
        assert!(body.contains("app.js"));
        conn.get_mut().write_all(get("/app.js").as_bytes()).unwrap();
        assert_eq!(response(&mut conn), (200, "keep-alive".into(), "console.log(1)".into()));
        // A request the routes refuse still closes: what follows it may not be a request.
        conn.get_mut().write_all(get("/missing").as_bytes()).unwrap();
        assert_eq!(response(&mut conn).0, 404);
        assert_closed(&mut conn);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (addr, _server) = serve(&app(WsConfig::default())).await;
    blocking(move || {
        let mut conn = open(addr);
        let pipelined = [get("/app.js"), get("/"), get("/app.js"), get("/bye"), get("/")].concat();
        conn.get_mut().write_all(pipelined.as_bytes()).unwrap();
        assert_eq!(response(&mut conn).2, "console.log(1)");
        assert!(response(&mut conn).2.contains("<script"));
        assert_eq!(response(&mut conn).2, "console.log(1)");
        // The handler's `Connection: close` ends it; the last request is not answered.
        let (status, connection, body) = response(&mut conn);
        assert_eq!((status, body.as_str()), (200, "bye"));
        assert!(connection.contains("close"), "{connection}");
        assert_closed(&mut conn);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_count_bounds_a_connection() {
    let (addr, _server) = serve(&app(WsConfig::default().http_keep_alive_requests(3))).await;
    blocking(move || {
        let mut conn = open(addr);
        for expected in ["keep-alive", "keep-alive", "close"] {
            conn.get_mut().write_all(get("/app.js").as_bytes()).unwrap();
            let (status, connection, _) = response(&mut conn);
            assert_eq!((status, connection.as_str()), (200, expected));
        }
        assert_closed(&mut conn);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let (addr, _server) = serve(&app(WsConfig::default().http_keep_alive_timeout(idle))).await;
    blocking(move || {
        let mut conn = open(addr);
        conn.get_mut().write_all(get("/").as_bytes()).unwrap();
        assert_eq!(response(&mut conn).1, "keep-alive");
        let answered = Instant::now();
        assert_closed(&mut conn);
        let waited = answered.elapsed();
        assert!(waited >= idle - Duration::from_millis(50), "closed after {waited:?}, before the idle timeout");
        assert!(waited < Duration::from_secs(8), "closed only after {waited:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_and_http_1_0_are_honoured() {
    let (addr, _server) = serve(&app(WsConfig::default())).await;
    blocking(move || {
        let mut conn = open(addr);
        conn.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(response(&mut conn).1, "close");
        assert_closed(&mut conn);

        let mut conn = open(addr);
        conn.get_mut().write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(response(&mut conn).1, "close");
        assert_closed(&mut conn);

        let mut conn = open(addr);
        conn.get_mut().write_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert_eq!(response(&mut conn).1, "keep-alive");
        conn.get_mut().write_all(b"GET /app.js HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(response(&mut conn).1, "close");
        assert_closed(&mut conn);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_works_on_a_kept_alive_connection() {
    let (addr, _server) = serve(&app(WsConfig::default())).await;
    blocking(move || {
        let mut conn = open(addr);
        conn.get_mut().write_all(get("/").as_bytes()).unwrap();
        assert_eq!(response(&mut conn).1, "keep-alive");
        assert!(conn.buffer().is_empty());
        let stream = conn.into_inner();
        let (mut ws, response) = tungstenite::client(format!("ws://{addr}/ws"), stream).expect("upgrade");
        assert_eq!(response.status(), 101);
        ws.send(tungstenite::Message::text("after a page")).unwrap();
        assert_eq!(ws.read().unwrap(), tungstenite::Message::text("after a page"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_an_idle_kept_alive_connection() {
    let app = app(WsConfig::default().http_keep_alive_timeout(Duration::from_secs(60)));
    let (addr, server) = serve(&app).await;
    let conn = blocking(move || {
        let mut conn = open(addr);
        conn.get_mut().write_all(get("/").as_bytes()).unwrap();
        assert_eq!(response(&mut conn).1, "keep-alive");
        conn
    })
    .await;
    let started = Instant::now();
    app.shutdown();
    tokio::time::timeout(Duration::from_secs(30), server).await.expect("serve returned").unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    blocking(move || assert_closed(&mut { conn })).await;
}
