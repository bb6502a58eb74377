//! Every log line of a connection is in its `conn` span, which carries the
//! connection's id, route and remote address, so one connection's lines
//! can be filtered (`RUST_LOG`, or a log search on `conn{id=7 ...}`).
//! Lines of the HTTP phase (before an id exists) carry the remote address.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{App, Callbacks};
use common::*;

/// The formatted log, shared with the subscriber's writer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().map(str::to_owned).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_log_lines_carry_its_id_route_and_address() {
    let log = Captured::default();
    let writer = log.clone();
    // Global: the connection's tasks run on any worker thread. This file
    // is its own test binary, so nothing else sees the subscriber.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let app = App::new();
    app.ws(
        "/rooms/:room",
        Callbacks::new().on_message(|ws, text| {
            tracing::info!("handler saw {text}");
            let _ = ws.send(text);
        }),
    );
    let (addr, _server) = serve(&app).await;
    let local_port = blocking(move || {
        let mut client = connect(addr, "/rooms/blue");
        let port = match client.get_ref() {
            tungstenite::stream::MaybeTlsStream::Plain(s) => s.local_addr().unwrap().port(),
            _ => unreachable!(),
        };
        client.send(tungstenite::Message::text("marker-one")).unwrap();
        assert_eq!(next_text(&mut client), "marker-one");
        port
    })
    .await;
    let (status, _) = blocking(move || raw_http(addr, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 404);

    let remote = format!("remote=127.0.0.1:{local_port}");
    let lines = log.clone();
    assert!(
        eventually(Duration::from_secs(10), || lines.lines().iter().any(|l| l.contains("handler saw marker-one")))
            .await,
        "the handler's line was not logged: {:#?}",
        log.lines()
    );
    let all = log.lines();
    let handler_line = all.iter().find(|l| l.contains("handler saw marker-one")).unwrap();
    assert!(
        handler_line.contains(&format!("conn{{{remote} id=1 route=/rooms/:room}}")),
        "the handler's line is not in the connection's span: {handler_line}"
    );
    let open_line = all.iter().find(|l| l.contains("connection open")).expect("the open line");
    assert!(open_line.contains(&format!("conn{{{remote} id=1 route=/rooms/:room}}")), "{open_line}");
    // The 404 came before any id: its line carries the address only.
    let rejected =
        all.iter().find(|l| l.contains("request rejected") && l.contains("status=404")).expect("the 404 line");
    assert!(rejected.contains("conn{remote=127.0.0.1:"), "{rejected}");
}
