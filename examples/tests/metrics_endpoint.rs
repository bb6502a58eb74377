//! The `metrics` example over real sockets: WebSocket traffic (tungstenite
//! clients) and rejected handshakes move the counters that `GET /metrics`
//! shows in Prometheus format.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

fn normal() -> Option<CloseFrame> {
    Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })
}

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Server {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_metrics"))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start the metrics example");
    let server = Server(child, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the example did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Sends `request` as is and reads the whole answer (the server closes).
fn raw(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /metrics`, parsed into `name{labels}` → value.
fn scrape(port: u16) -> HashMap<String, f64> {
    let response = raw(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}

/// Scrapes until `ok` holds (counters are flushed once per connection poll,
/// so they may trail the client by a moment).
fn scrape_until(port: u16, ok: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = scrape(port);
        if ok(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "metrics never got there: {metrics:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn websocket_traffic_moves_the_prometheus_counters() {
    let server = start();
    let port = server.1;

    // Echo: three messages in, three out, then a normal close from the client.
    let (mut echo, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/echo")).unwrap();
    for i in 0..3 {
        echo.send(Message::text(format!("hello {i}"))).unwrap();
        assert_eq!(echo.read().unwrap(), Message::text(format!("hello {i}")));
    }
    echo.close(normal()).unwrap();
    while echo.read().is_ok() {}

    // A room of two: one message broadcast to both.
    let (mut a, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/room")).unwrap();
    let (mut b, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/room")).unwrap();
    a.send(Message::text("to the room")).unwrap();
    assert_eq!(a.read().unwrap(), Message::text("to the room"));
    assert_eq!(b.read().unwrap(), Message::text("to the room"));

    // Rejected handshakes: an unknown path, and an upgrade without a key.
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    let not_found = raw(
        port,
        &format!("GET /nowhere HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
    );
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    let bad = raw(port, &format!("GET /echo HTTP/1.1\r\nHost: x\r\n{upgrade}\r\n"));
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");

    let metrics = scrape_until(port, |m| {
        value(m, r#"blaze_connections_closed_total{code="1000",cause="remote"}"#) >= 1.0
            && value(m, "blaze_messages_sent_total") >= 5.0
            && value(m, "blaze_messages_received_total") >= 4.0
    });
    assert_eq!(value(&metrics, r#"blaze_http_responses_total{status="101"}"#), 3.0, "{metrics:#?}");
    assert_eq!(value(&metrics, r#"blaze_http_responses_total{status="404"}"#), 1.0);
    assert_eq!(value(&metrics, r#"blaze_http_responses_total{status="400"}"#), 1.0);
    assert_eq!(value(&metrics, r#"blaze_connections_opened_total{route="/echo"}"#), 1.0);
    assert_eq!(value(&metrics, r#"blaze_connections_opened_total{route="/room"}"#), 2.0);
    assert_eq!(value(&metrics, r#"blaze_connections_open{route="/room"}"#), 2.0);
    assert_eq!(value(&metrics, r#"blaze_connections_open{route="/echo"}"#), 0.0);
    assert_eq!(value(&metrics, "blaze_messages_received_total"), 4.0);
    assert_eq!(value(&metrics, "blaze_messages_sent_total"), 5.0);
    assert_eq!(value(&metrics, "blaze_broadcasts_total"), 1.0);
    assert_eq!(value(&metrics, "blaze_broadcast_fanout_sum"), 2.0);
    assert_eq!(value(&metrics, "blaze_broadcast_fanout_count"), 1.0);
    assert_eq!(value(&metrics, r#"blaze_broadcast_fanout_bucket{le="1"}"#), 0.0);
    assert_eq!(value(&metrics, r#"blaze_broadcast_fanout_bucket{le="10"}"#), 1.0);
    // Client frames carry a 6-byte header (masked, short): 4 messages of 7-11 bytes.
    let received = value(&metrics, "blaze_received_bytes_total");
    assert!((4.0 * 6.0 + 7.0 * 4.0..200.0).contains(&received), "{received}");
    let sent = value(&metrics, "blaze_sent_bytes_total");
    assert!(sent >= 5.0 * 2.0 + 7.0 * 5.0, "{sent}");
    let writes = value(&metrics, "blaze_write_calls_total");
    assert!((3.0..=12.0).contains(&writes), "{writes}");

    // The room closes: the gauge goes back to zero.
    a.close(normal()).unwrap();
    b.close(normal()).unwrap();
    while a.read().is_ok() {}
    while b.read().is_ok() {}
    scrape_until(port, |m| {
        value(m, r#"blaze_connections_open{route="/room"}"#) == 0.0
            && value(m, r#"blaze_connections_closed_total{code="1000",cause="remote"}"#) == 3.0
    });
}
