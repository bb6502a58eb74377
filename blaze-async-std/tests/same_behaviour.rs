//! The async-std adapter behaves like the tokio one: every handler style,
//! broadcast framed once, heartbeats, backpressure, guards and graceful
//! shutdown, checked with the tungstenite client over loopback TCP.

use std::net::{SocketAddr, TcpStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_async_std::{guard, App, Callbacks, Response, WsConfig};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

async fn serve(app: &App) -> SocketAddr {
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    async_std::task::spawn(async move { app.serve(listener).await });
    addr
}

fn connect(addr: SocketAddr, path: &str) -> Client {
    let (client, _) = tungstenite::connect(format!("ws://{addr}{path}")).unwrap();
    if let MaybeTlsStream::Plain(s) = client.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    client
}

fn next_text(client: &mut Client) -> String {
    loop {
        match client.read().unwrap() {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

fn close_code(client: &mut Client) -> u16 {
    loop {
        match client.read() {
            Ok(Message::Close(Some(frame))) => return frame.code.into(),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

/// How long a Blaze client waits for the next message before the test fails.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// `ws.recv()`, failing the test (with the caller's line) when nothing
/// arrives within [`RECV_TIMEOUT`], instead of hanging.
#[track_caller]
fn recv_within(
    ws: &mut blaze_async_std::WsStream,
) -> impl std::future::Future<Output = Option<blaze_async_std::Message>> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        match async_std::future::timeout(RECV_TIMEOUT, ws.recv()).await {
            Ok(message) => message,
            Err(_) => panic!("no message (nor the end of the connection) within {RECV_TIMEOUT:?}, awaited at {caller}"),
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    async_std::task::spawn_blocking(f).await
}

async fn eventually(timeout: Duration, check: impl Fn() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check() {
            return true;
        }
        async_std::task::sleep(Duration::from_millis(10)).await;
    }
    check()
}

#[async_std::test]
async fn every_handler_style_echoes() {
    let app = App::new();
    app.ws("/cb", Callbacks::new().on_message(|ws, t| {
        let _ = ws.send(t);
    }));
    app.ws_stream("/stream", |mut ws| async move {
        while let Some(m) = ws.recv().await {
            let _ = ws.send(m);
        }
    });
    let addr = serve(&app).await;
    blocking(move || {
        for path in ["/cb", "/stream"] {
            let mut c = connect(addr, path);
            for i in 0..50 {
                c.send(Message::text(format!("{path} {i}"))).unwrap();
                assert_eq!(next_text(&mut c), format!("{path} {i}"));
            }
            let big = "z".repeat(200_000);
            c.send(Message::text(big.clone())).unwrap();
            assert_eq!(next_text(&mut c), big);
        }
    })
    .await;
}

#[async_std::test]
async fn broadcast_reaches_everyone_once_with_one_encoding() {
    let app = App::new();
    app.ws("/feed", Callbacks::new());
    let addr = serve(&app).await;
    let clients: Vec<Client> = blocking(move || (0..100).map(|_| connect(addr, "/feed")).collect()).await;
    assert!(eventually(Duration::from_secs(3), || app.connection_count("/feed") == 100).await);
    for i in 0..20 {
        assert_eq!(app.broadcast("/feed", format!("m{i}")).unwrap(), 100);
    }
    assert_eq!(app.encodings(), 20);
    blocking(move || {
        for mut c in clients {
            for i in 0..20 {
                assert_eq!(next_text(&mut c), format!("m{i}"));
            }
        }
    })
    .await;
}

#[async_std::test]
async fn silent_clients_are_pruned_by_heartbeat() {
    let config = WsConfig::default().ping_interval(Some(Duration::from_millis(100))).pong_timeout(Duration::from_millis(200));
    // Silence → a ping after `ping_interval` → dropped `pong_timeout` later.
    let deadline = config.ping_interval.unwrap() + config.pong_timeout;
    // Per connection: when `on_open` ran, and the code and time of `on_close`.
    // Recorded here and asserted outside: a panic inside a callback is caught
    // by the driver and would only keep the count from being reached.
    let opened: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let closes: Arc<Mutex<Vec<(u64, u16, Instant)>>> = Arc::default();
    let app = App::new();
    app.config(config);
    let (on_open, on_close) = (opened.clone(), closes.clone());
    app.ws(
        "/hb",
        Callbacks::new()
            .on_open(move |ws| {
                on_open.lock().unwrap().insert(ws.id().0, Instant::now());
            })
            .on_close(move |ws, code, _| {
                on_close.lock().unwrap().push((ws.id().0, code, Instant::now()));
            }),
    );
    let addr = serve(&app).await;
    let silent: Vec<Client> = blocking(move || (0..10).map(|_| connect(addr, "/hb")).collect()).await;
    assert!(eventually(Duration::from_secs(3), || closes.lock().unwrap().len() == 10).await);
    assert_eq!(app.connection_count("/hb"), 0);
    let opened = opened.lock().unwrap().clone();
    for &(id, code, closed_at) in closes.lock().unwrap().iter() {
        assert_eq!(code, 1006, "connection {id}: a dead peer sends no close frame");
        let opened_at = *opened.get(&id).unwrap_or_else(|| panic!("connection {id} closed but its on_open never ran"));
        let silence = closed_at - opened_at;
        // Never before the deadline (a little slack: the heartbeat may start
        // just before `on_open` runs); the upper bound is the 3 s above.
        assert!(
            silence + Duration::from_millis(20) >= deadline,
            "connection {id} dropped after {silence:?} of silence, before ping_interval + pong_timeout = {deadline:?}"
        );
    }
    drop(silent);
}

#[async_std::test]
async fn guards_reject_with_their_status_and_panics_close_with_1011() {
    let app = App::new();
    app.ws("/me", Callbacks::new())
        .guard(guard(|req, _| req.bearer_token().map(|_| ()).ok_or_else(|| Response::text(401, "no token"))));
    app.ws("/panic", Callbacks::new().on_message(|_, _| panic!("boom")));
    let addr = serve(&app).await;
    blocking(move || {
        match tungstenite::connect(format!("ws://{addr}/me")) {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 401),
            other => panic!("{:?}", other.map(|_| ())),
        }
        let mut ok = connect(addr, "/me?token=t");
        ok.send(Message::text("x")).unwrap();
        let mut victim = connect(addr, "/panic");
        victim.send(Message::text("x")).unwrap();
        assert_eq!(close_code(&mut victim), 1011);
    })
    .await;
}

#[async_std::test]
async fn shutdown_sends_1001_and_serve_returns() {
    let app = App::new();
    app.drain_timeout(Duration::from_secs(2));
    app.ws("/s", Callbacks::new());
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = {
        let app = app.clone();
        async_std::task::spawn(async move { app.serve(listener).await })
    };
    let clients: Vec<Client> = blocking(move || (0..10).map(|_| connect(addr, "/s")).collect()).await;
    assert!(eventually(Duration::from_secs(2), || app.connection_count("/s") == 10).await);
    app.shutdown();
    let codes = blocking(move || clients.into_iter().map(|mut c| close_code(&mut c)).collect::<Vec<_>>()).await;
    assert!(codes.iter().all(|&c| c == 1001));
    async_std::future::timeout(Duration::from_secs(3), server).await.unwrap().unwrap();
    assert_eq!(app.total_connections(), 0);
}

/// Reads raw server frames (unmasked) until a close frame; returns its code.
fn close_frame_code(stream: &mut TcpStream) -> u16 {
    use std::io::Read;
    loop {
        let mut header = [0u8; 2];
        stream.read_exact(&mut header).expect("a frame header before the close frame");
        let len = match header[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                stream.read_exact(&mut ext).unwrap();
                u16::from_be_bytes(ext) as usize
            }
            127 => {
                let mut ext = [0u8; 8];
                stream.read_exact(&mut ext).unwrap();
                u64::from_be_bytes(ext) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).expect("a whole frame");
        if header[0] & 0x0f == 0x8 {
            assert!(payload.len() >= 2, "a close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[async_std::test]
async fn stalled_reader_is_closed_with_1008_and_its_queue_stays_bounded() {
    use std::io::{Read, Write};
    const LIMIT: usize = 64 * 1024;
    let app = App::new();
    // The stalled client reads its close frame only after the broadcasts:
    // generous close and write timeouts, so that a busy machine does not
    // get it dropped (1006) before it can read its 1008.
    app.config(
        WsConfig::default()
            .max_backpressure(LIMIT)
            .close_timeout(Duration::from_secs(60))
            .write_timeout(Some(Duration::from_secs(60))),
    );
    app.ws("/feed", Callbacks::new());
    let addr = serve(&app).await;
    // A client that handshakes by hand and stops reading until the end.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        stalled,
        "GET /feed HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    // The 101 head, up to its blank line (its length depends on the headers).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stalled.read_exact(&mut byte).expect("the 101 response");
        head.push(byte[0]);
        assert!(head.len() < 4096, "no end of the response head");
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    assert!(eventually(Duration::from_secs(2), || app.connection_count("/feed") == 1).await);
    let ws = app.connection(app.connections("/feed")[0].id).unwrap();
    let payload = "p".repeat(8 * 1024);
    let mut max_queued = 0;
    // Far more than the kernel's buffers can absorb.
    for _ in 0..4000 {
        if app.broadcast("/feed", payload.as_str()).unwrap() == 0 {
            break;
        }
        max_queued = max_queued.max(ws.buffered_amount());
        async_std::task::yield_now().await;
    }
    assert!(!ws.is_open(), "the stalled reader was not cut off");
    assert!(max_queued <= LIMIT + payload.len() + 16, "queued {max_queued}");
    // Cut off by the backpressure policy, not by anything else: the close
    // frame at the end of what was queued says 1008.
    let code = blocking(move || {
        let code = close_frame_code(&mut stalled);
        drop(stalled);
        code
    })
    .await;
    assert_eq!(code, 1008, "the stalled reader's close code");
    assert!(eventually(Duration::from_secs(7), || app.connection_count("/feed") == 0).await);
}

#[async_std::test]
async fn rate_limit_closes_with_1008() {
    let app = App::new();
    app.config(WsConfig::default().rate_limit(Some(blaze_async_std::RateLimit {
        per_second: 10.0,
        burst: 3,
        action: blaze_async_std::RateLimitAction::Close,
    })));
    app.ws("/r", Callbacks::new().on_message(|ws, t| {
        let _ = ws.send(t);
    }));
    let addr = serve(&app).await;
    blocking(move || {
        let mut c = connect(addr, "/r");
        for i in 0..10 {
            let _ = c.write(Message::text(format!("{i}")));
        }
        let _ = c.flush();
        assert_eq!(close_code(&mut c), 1008);
    })
    .await;
}

#[async_std::test]
async fn permessage_deflate_round_trips_and_broadcasts_compress_once() {
    use blaze_async_std::{ClientOptions, CompressionMode, DeflateConfig};
    let app = App::new();
    app.ws_with_config(
        "/z",
        WsConfig::default().compression_mode(CompressionMode::Shared).compression_threshold(0),
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.broadcast(text);
        }),
    );
    let addr = serve(&app).await;
    let mut clients = Vec::new();
    for mode in [CompressionMode::Shared, CompressionMode::Dedicated] {
        let options = ClientOptions::default().deflate(DeflateConfig::default().mode(mode).threshold(0));
        clients.push(blaze_async_std::connect_with_options(&format!("ws://{addr}/z"), options).await.unwrap());
    }
    clients.push(blaze_async_std::connect(&format!("ws://{addr}/z")).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.connection_count("/z") < 3 && Instant::now() < deadline {
        blaze_async_std::delay(Duration::from_millis(10)).await;
    }
    assert_eq!(app.connection_count("/z"), 3);
    assert_eq!(clients.iter().map(|c| c.handle().is_compressed()).collect::<Vec<_>>(), [true, true, false]);
    let compressions = app.compressions();
    let text = "κόσμε ".repeat(300);
    clients[0].send(text.as_str()).unwrap();
    for client in &mut clients {
        assert_eq!(recv_within(client).await, Some(blaze_async_std::Message::text(text.clone())));
    }
    // A shared-mode server keeps no context: one compression for both.
    assert_eq!(app.compressions() - compressions, 1);
}
