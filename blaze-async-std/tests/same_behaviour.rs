//! The async-std adapter behaves like the tokio one: every handler style,
//! broadcast framed once, heartbeats, backpressure, guards and graceful
//! shutdown, checked with the tungstenite client over loopback TCP.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    let closes = Arc::new(AtomicUsize::new(0));
    let app = App::new();
    app.config(WsConfig::default().ping_interval(Some(Duration::from_millis(100))).pong_timeout(Duration::from_millis(200)));
    let seen = closes.clone();
    app.ws("/hb", Callbacks::new().on_close(move |_, code, _| {
        assert_eq!(code, 1006);
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    let addr = serve(&app).await;
    let silent: Vec<Client> = blocking(move || (0..10).map(|_| connect(addr, "/hb")).collect()).await;
    assert!(eventually(Duration::from_secs(3), || closes.load(Ordering::SeqCst) == 10).await);
    assert_eq!(app.connection_count("/hb"), 0);
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

#[async_std::test]
async fn stalled_reader_is_closed_with_1008_and_its_queue_stays_bounded() {
    use std::io::{Read, Write};
    const LIMIT: usize = 64 * 1024;
    let app = App::new();
    app.config(WsConfig::default().max_backpressure(LIMIT));
    app.ws("/feed", Callbacks::new());
    let addr = serve(&app).await;
    // A client that handshakes by hand and never reads again.
    let mut stalled = TcpStream::connect(addr).unwrap();
    write!(
        stalled,
        "GET /feed HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 129];
    stalled.read_exact(&mut head).unwrap();
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
    drop(stalled);
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
        let got = async_std::future::timeout(Duration::from_secs(5), client.recv()).await.expect("within 5 s");
        assert_eq!(got, Some(blaze_async_std::Message::text(text.clone())));
    }
    // A shared-mode server keeps no context: one compression for both.
    assert_eq!(app.compressions() - compressions, 1);
}
