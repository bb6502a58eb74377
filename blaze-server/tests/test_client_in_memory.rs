//! `app.test_client(..)`: the real server (accept loop, routing, guards,
//! driver, hub, heartbeats, shutdown) over the in-memory transport on a
//! virtual clock. Run with `--features testing`.
#![cfg(feature = "testing")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_server::testing::TestServer;
use blaze_server::{guard, App, Callbacks, ClientError, ClientOptions, Message, Response, WsConfig};

type CloseLog = Arc<Mutex<Vec<(u16, Duration)>>>;

fn closes() -> (CloseLog, App) {
    (Arc::new(Mutex::new(Vec::new())), App::new())
}

#[test]
fn echo_and_broadcast_between_two_clients() {
    let app = App::new();
    app.ws(
        "/chat",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.broadcast_others(format!("{}: {text}", ws.query("name").unwrap_or("?")));
        }),
    );
    let ann = app.test_client("/chat?name=ann").unwrap();
    let mut bob = app.test_client("/chat?name=bob").unwrap();
    assert_eq!(app.connection_count("/chat"), 2);
    ann.send("hello").unwrap();
    assert_eq!(bob.recv_text().as_deref(), Some("ann: hello"));
    assert_eq!(bob.recv(), None);
}

#[test]
fn a_silent_client_is_pruned_at_the_heartbeat_bound_in_virtual_time() {
    let (log, app) = closes();
    // The heartbeat alone: `read_timeout` (60 s by default) would cut the
    // silent client first.
    app.config(WsConfig::default().read_timeout(None));
    let server = app.test_server();
    let rt = server.runtime().clone();
    let seen = log.clone();
    app.ws(
        "/live",
        Callbacks::new().on_close(move |_, code, _| {
            seen.lock().unwrap().push((code, rt.elapsed()));
        }),
    );
    let alive = server.client("/live").unwrap();
    let silent = server.client("/live").unwrap();
    silent.hold();
    // Ping at 30 s, no pong by 30 + 60 s: pruned then, not before.
    server.advance(Duration::from_secs(89));
    assert_eq!(app.connection_count("/live"), 2);
    server.advance(Duration::from_secs(2));
    assert_eq!(app.connection_count("/live"), 1, "the silent client is pruned");
    let closes = log.lock().unwrap().clone();
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].0, 1006);
    assert!(closes[0].1 >= Duration::from_secs(90) && closes[0].1 <= Duration::from_secs(91), "{closes:?}");
    // The other answered every ping (automatic pongs) and is still there.
    server.advance(Duration::from_secs(600));
    assert!(alive.is_open());
    assert_eq!(app.connection_count("/live"), 1);
}

#[test]
fn a_guard_rejection_is_the_status_a_real_client_gets() {
    let app = App::new();
    app.ws(
        "/secure",
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(format!("hello {}", ws.local::<String>().unwrap()));
        }),
    )
    .guard(guard(|req, locals| match req.query("token") {
        Some("t0k") => {
            locals.insert("alice".to_owned());
            Ok(())
        }
        _ => Err(Response::text(401, "no")),
    }));
    match app.test_client("/secure") {
        Err(ClientError::Handshake(blaze_proto::handshake::ClientHandshakeError::Rejected { status, body })) => {
            assert_eq!(status, 401);
            assert_eq!(&body[..], b"no");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let mut ok = app.test_client("/secure?token=t0k").unwrap();
    assert_eq!(ok.recv_text().as_deref(), Some("hello alice"));
}

#[test]
fn shutdown_closes_everyone_with_1001_and_serve_returns() {
    let app = App::new();
    app.ws("/a", Callbacks::new());
    let server = TestServer::new(&app);
    let a = server.client("/a").unwrap();
    let b = server.client("/a").unwrap();
    let took = server.shutdown();
    assert!(!server.is_serving());
    assert!(took < Duration::from_secs(1), "clients answer the close at once: {took:?}");
    assert_eq!(a.close_status().map(|s| s.0), Some(1001));
    assert_eq!(b.close_status().map(|s| s.0), Some(1001));
    assert_eq!(app.total_connections(), 0);
    assert!(matches!(server.client("/a"), Err(ClientError::Io(_))), "no longer listening");
}

#[test]
fn a_client_that_stops_reading_is_closed_by_backpressure() {
    let app = App::new();
    app.config(WsConfig::default().max_backpressure(64 * 1024));
    app.ws("/feed", Callbacks::new());
    let server = app.test_server();
    server.set_pipe_capacity(16 * 1024);
    // The client's inbox holds 64 messages, then it stops reading.
    let mut reader = server.client("/feed").unwrap();
    let payload = "x".repeat(1000);
    let mut queued = 0;
    for _ in 0..1000 {
        if app.broadcast("/feed", payload.as_str()).unwrap() == 1 {
            queued += 1;
        }
        server.run();
    }
    assert!(queued < 1000, "the connection was closed once over max_backpressure");
    assert!(queued * 1000 >= 64 * 1024, "not before: {queued} messages");
    // The close frame cannot be written past the stalled output: the
    // connection is dropped at close_timeout (5 s).
    server.advance(Duration::from_secs(4));
    assert_eq!(app.connection_count("/feed"), 1);
    server.advance(Duration::from_secs(2));
    assert_eq!(app.connection_count("/feed"), 0);
    // The client still gets what reached it, then the end.
    let got = reader.recv_all();
    assert!(got.len() >= 64 && got.iter().all(|m| m == &Message::text(payload.clone())), "{}", got.len());
    assert!(reader.close_status().is_some());
}

#[test]
fn plain_http_and_unknown_paths_over_a_raw_connection() {
    let app = App::new();
    app.get("/health", |_| Response::text(200, "ok"));
    let server = app.test_server();
    let mut raw = server.connect_raw();
    // A page without keep-alive: the connection ends after it.
    raw.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (out, eof) = raw.read();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok"));
    assert!(eof);
    let mut raw = server.connect_raw();
    raw.write(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(String::from_utf8_lossy(&raw.read().0).starts_with("HTTP/1.1 404"));
    // A request never finished gets 408 at the handshake timeout.
    let mut slow = server.connect_raw();
    slow.write(b"GET /health HTTP/1.1\r\n");
    server.advance(Duration::from_secs(11));
    assert!(String::from_utf8_lossy(&slow.read().0).starts_with("HTTP/1.1 408"));
}

#[test]
fn subprotocols_and_headers_reach_the_handler() {
    let app = App::new();
    app.ws_with_config(
        "/p",
        WsConfig::default().subprotocols(["v2"]),
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(format!("{:?} {:?}", ws.protocol(), ws.header("x-user")));
        }),
    );
    let options = ClientOptions::default().protocol("v2").header("X-User", "ann");
    let mut client = app.test_server().client_with("/p", options).unwrap();
    assert_eq!(client.recv_text().as_deref(), Some("Some(\"v2\") Some(\"ann\")"));
    assert_eq!(client.stream().protocol(), Some("v2"));
}

#[test]
fn dropping_every_client_frees_the_server_and_its_connections() {
    let app = App::new();
    app.ws("/x", Callbacks::new());
    let server = app.test_server();
    let weak_probe = server.runtime().clone();
    let a = server.client("/x").unwrap();
    assert!(weak_probe.task_count() >= 2);
    drop(server);
    drop(a);
    assert_eq!(weak_probe.task_count(), 0, "every task dropped with the last handle");
    assert_eq!(app.total_connections(), 0);
    // A new client gets a new server.
    let _b = app.test_client("/x").unwrap();
    assert_eq!(app.total_connections(), 1);
}

/// Found by the `server` fuzz target (issue 10, "Shutdown"): a client that
/// does not read its 101 holds the handshake task in the write of the 101
/// (it has no deadline), past the drain; `serve` returns, and when the
/// client finally reads, the connection registers on a server that is no
/// longer serving, and lives on (with heartbeats off, forever). Ignored
/// until serve.rs bounds the 101's write and refuses to register after the
/// drain; `cargo test -p blaze-server --features testing -- --ignored` runs it.
#[test]
fn a_handshake_stalled_in_its_101_does_not_outlive_serve() {
    let app = App::new();
    app.config(WsConfig::default().ping_interval(None));
    app.drain_timeout(Duration::from_millis(500));
    app.ws("/echo", Callbacks::new());
    let server = TestServer::new(&app);
    server.set_pipe_capacity(64); // the 101 does not fit
    let mut raw = server.connect_raw();
    let mut request: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    while !request.is_empty() {
        let n = raw.write(request);
        assert!(n > 0, "the server reads the request");
        request = &request[n..];
    }
    server.shutdown();
    assert!(!server.is_serving());
    let _ = raw.read(); // the client reads its 101 at last
    server.advance(Duration::from_secs(60));
    assert_eq!(app.total_connections(), 0, "a connection registered after serve() returned");
}
