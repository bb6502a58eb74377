//! Every `WsConfig` field that is mapped onto the protocol core's `Config`
//! (`WsConfig::connection_config`) or onto the driver's limits
//! (`DriverLimits::from_config`) changes what a real client sees: each
//! test below fails if its field stops reaching the connection (the
//! defaults, 1 MiB / 30 s / 60 s / 5 s / none / 1 MiB / close / none /
//! 10 s, would all give a different outcome within the test's bounds).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{App, BackpressurePolicy, Callbacks, SendError, WsConfig, WsError};
use common::*;
use tungstenite::Message;

/// Echoes text and binary messages.
fn echo() -> Callbacks {
    Callbacks::new()
        .on_message(|ws, text| {
            let _ = ws.send(text);
        })
        .on_binary(|ws, data| {
            let _ = ws.send_binary(data);
        })
}

type Closes = Arc<Mutex<Vec<(u16, String, Instant)>>>;

/// Records every `on_close` (code, reason, when).
fn recording(closes: &Closes) -> Callbacks {
    let closes = closes.clone();
    echo().on_close(move |_ws, code, reason| closes.lock().unwrap().push((code, reason.to_owned(), Instant::now())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_frame_size_reaches_the_core() {
    let app = App::new();
    // The message limit stays at its default (1 MiB): only the frame limit
    // can refuse a 1001-byte frame.
    app.ws_with_config("/f", WsConfig::default().max_frame_size(1000), echo());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut client = connect(addr, "/f");
        // A frame of exactly max_frame_size passes.
        client.send(Message::text("a".repeat(1000))).unwrap();
        assert_eq!(next_text(&mut client), "a".repeat(1000));
        // A message larger than the frame limit, in frames within it, passes.
        let mut stream = raw_ws_connect(addr, "/f", None, "");
        let mut bytes = masked_frame(false, 1, &[b'b'; 900]);
        bytes.extend(masked_frame(false, 0, &[b'b'; 900]));
        bytes.extend(masked_frame(true, 0, &[b'b'; 900]));
        stream.write_all(&bytes).unwrap();
        let mut frames = RawFrames::new(stream, Duration::from_secs(5));
        let echoed = frames.next().unwrap();
        assert_eq!((echoed.opcode, echoed.payload.len()), (1, 2700));
        // One byte over: 1009.
        client.send(Message::text("a".repeat(1001))).unwrap();
        assert_eq!(expect_close(&mut client).0, 1009);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_size_reaches_the_core() {
    let app = App::new();
    app.ws_with_config("/m", WsConfig::default().max_message_size(1000), echo());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        // 1000 bytes in two fragments: at the limit, echoed whole.
        let mut stream = raw_ws_connect(addr, "/m", None, "");
        let mut bytes = masked_frame(false, 2, &[7u8; 500]);
        bytes.extend(masked_frame(true, 0, &[7u8; 500]));
        stream.write_all(&bytes).unwrap();
        let mut frames = RawFrames::new(stream, Duration::from_secs(5));
        assert_eq!(frames.next().unwrap(), RawFrame { opcode: 2, fin: true, payload: vec![7u8; 1000] });
        // 1200 bytes in two 600-byte fragments (each far under the 1 MiB
        // frame limit): only the message limit refuses it.
        let mut stream = raw_ws_connect(addr, "/m", None, "");
        let mut bytes = masked_frame(false, 2, &[7u8; 600]);
        bytes.extend(masked_frame(true, 0, &[7u8; 600]));
        stream.write_all(&bytes).unwrap();
        assert_eq!(RawFrames::new(stream, Duration::from_secs(5)).until_close(), Ok(1009));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_interval_reaches_the_core() {
    let app = App::new();
    app.ws_with_config("/p", WsConfig::default().ping_interval(Some(Duration::from_millis(200))), echo());
    let (addr, _server) = serve(&app).await;
    let (first_ping, second_ping) = blocking(move || {
        let started = Instant::now();
        let mut client = connect(addr, "/p");
        let mut pings = Vec::new();
        while pings.len() < 2 {
            match client.read().expect("a ping before the read timeout") {
                Message::Ping(payload) => pings.push((started.elapsed(), payload)),
                other => panic!("expected a ping, got {other:?}"),
            }
        }
        (pings[0].clone(), pings[1].clone())
    })
    .await;
    // Heartbeat pings carry no payload.
    assert!(first_ping.1.is_empty() && second_ping.1.is_empty());
    // The server's timer starts after our connect began: not before 200 ms.
    assert!(first_ping.0 >= Duration::from_millis(195), "first ping too early: {:?}", first_ping.0);
    assert!(first_ping.0 < Duration::from_secs(3), "first ping too late: {:?}", first_ping.0);
    // tungstenite answered the first (its pong is activity): another interval.
    assert!(second_ping.0 - first_ping.0 >= Duration::from_millis(150), "pings too close: {first_ping:?} {second_ping:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pong_timeout_reaches_the_core() {
    let closes: Closes = Arc::default();
    let app = App::new();
    app.ws_with_config(
        "/pt",
        WsConfig::default().ping_interval(Some(Duration::from_millis(100))).pong_timeout(Duration::from_millis(600)),
        recording(&closes),
    );
    let (addr, _server) = serve(&app).await;
    let started = Instant::now();
    // This client never reads, so never answers the ping.
    let client = blocking(move || connect(addr, "/pt")).await;
    assert!(eventually(Duration::from_secs(5), || !closes.lock().unwrap().is_empty()).await, "never closed");
    let (code, reason, at) = closes.lock().unwrap()[0].clone();
    assert_eq!((code, reason.as_str()), (1006, "pong timeout"));
    let elapsed = at - started;
    // ping_interval + pong_timeout = 700 ms at the earliest (the default
    // pong timeout, 60 s, would be far past the 5 s bound above).
    assert!(elapsed >= Duration::from_millis(690), "closed too early: {elapsed:?}");
    assert_eq!(app.connection_count("/pt"), 0);
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_timeout_reaches_the_core() {
    let closes: Closes = Arc::default();
    let asked: Arc<Mutex<Option<Instant>>> = Arc::default();
    let app = App::new();
    let closes2 = closes.clone();
    let asked2 = asked.clone();
    app.ws_with_config(
        "/c",
        WsConfig::default().close_timeout(Duration::from_millis(300)),
        Callbacks::new()
            .on_message(move |ws, text| {
                if &*text == "close me" {
                    *asked2.lock().unwrap() = Some(Instant::now());
                    let _ = ws.close(4001u16, "bye");
                }
            })
            .on_close(move |_ws, code, reason| closes2.lock().unwrap().push((code, reason.to_owned(), Instant::now()))),
    );
    let (addr, _server) = serve(&app).await;
    // The client asks for the close and then never reads: our close frame
    // is never answered.
    let client = blocking(move || {
        let mut client = connect(addr, "/c");
        client.send(Message::text("close me")).unwrap();
        client
    })
    .await;
    // The default close timeout (5 s) would miss this bound.
    assert!(eventually(Duration::from_millis(3500), || !closes.lock().unwrap().is_empty()).await, "never closed");
    let (code, reason, at) = closes.lock().unwrap()[0].clone();
    assert_eq!((code, reason.as_str()), (4001, "close handshake timed out"));
    let waited = at - asked.lock().unwrap().expect("close asked");
    assert!(waited >= Duration::from_millis(295), "gave up too early: {waited:?}");
    assert_eq!(app.connection_count("/c"), 0);
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_reaches_the_core() {
    let app = App::new();
    app.ws_with_config(
        "/i",
        WsConfig::default().idle_timeout(Some(Duration::from_millis(400))).ping_interval(None),
        echo(),
    );
    let (addr, _server) = serve(&app).await;
    let (kept_alive, closed, elapsed, since_last) = blocking(move || {
        let started = Instant::now();
        let mut client = connect(addr, "/i");
        // Messages keep it open past the idle timeout...
        for i in 0..4 {
            std::thread::sleep(Duration::from_millis(150));
            client.send(Message::text(format!("m{i}"))).unwrap();
            assert_eq!(next_text(&mut client), format!("m{i}"));
        }
        let kept_alive = started.elapsed();
        let last = Instant::now();
        // ...then silence closes it with 1000.
        let closed = expect_close(&mut client);
        (kept_alive, closed, started.elapsed(), last.elapsed())
    })
    .await;
    assert!(kept_alive >= Duration::from_millis(600), "{kept_alive:?}");
    assert_eq!(closed, (1000, "idle timeout".to_owned()));
    assert!(since_last >= Duration::from_millis(390), "idle close too early after the last message: {since_last:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// A connection whose client stopped reading, with a small kernel receive
/// buffer; the server was served with a small send buffer.
async fn stalled(addr: std::net::SocketAddr, path: &'static str, app: &App) -> (std::net::TcpStream, blaze_tokio::WebSocket) {
    let before = app.connections(path).len();
    let stream = blocking(move || raw_ws_connect(addr, path, Some(4096), "")).await;
    assert!(eventually(Duration::from_secs(5), || app.connections(path).len() == before + 1).await);
    let id = app.connections(path).into_iter().map(|c| c.id).max().unwrap();
    (stream, app.connection(id).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_backpressure_reaches_the_core() {
    const LIMIT: usize = 64 * 1024;
    const CHUNK: usize = 8 * 1024;
    let app = App::new();
    app.ws_with_config(
        "/bp",
        WsConfig::default()
            .max_backpressure(LIMIT)
            .close_timeout(Duration::from_secs(30))
            .write_timeout(Some(Duration::from_secs(30))),
        Callbacks::new(),
    );
    let (addr, _server) = serve_with_sndbuf(&app, 64 * 1024).await;
    let (stream, ws) = stalled(addr, "/bp", &app).await;
    // Up to 8 MiB, far more than the kernel buffers hold: the queue fills.
    let payload = "z".repeat(CHUNK);
    let mut max_queued = 0;
    let mut refused = None;
    for i in 0..1024 {
        match ws.send(payload.as_str()) {
            Ok(()) => max_queued = max_queued.max(ws.buffered_amount()),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let (_, error) = refused.expect("the queue never filled");
    assert_eq!(error, SendError::Backpressure);
    // Refused at the configured bound, not the 1 MiB default.
    assert!(max_queued <= LIMIT + CHUNK + 16, "queued {max_queued} bytes");
    assert!(!ws.is_open());
    // The close policy (the default) closes with 1008, after what was
    // already on its way.
    let code = blocking(move || RawFrames::new(stream, Duration::from_secs(10)).until_close()).await;
    assert_eq!(code, Ok(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_policy_reaches_the_core() {
    let dropped: Arc<Mutex<Vec<usize>>> = Arc::default();
    let app = App::new();
    let seen = dropped.clone();
    app.ws_with_config(
        "/drop",
        WsConfig::default().max_backpressure(64 * 1024).backpressure_policy(BackpressurePolicy::Drop),
        Callbacks::new().on_error(move |_ws, error| {
            if let WsError::Dropped { len } = error {
                seen.lock().unwrap().push(*len);
            }
        }),
    );
    let (addr, _server) = serve_with_sndbuf(&app, 64 * 1024).await;
    let (stream, ws) = stalled(addr, "/drop", &app).await;
    let payload = "d".repeat(8 * 1024);
    let mut refusals = 0;
    for i in 0..1024 {
        if let Err(e) = ws.send(payload.as_str()) {
            assert_eq!(e, SendError::Backpressure);
            refusals += 1;
        }
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(refusals > 0, "nothing was refused");
    // Under the drop policy the connection stays open (the default policy
    // would have closed it with 1008) and on_error hears of every drop.
    assert!(ws.is_open());
    assert!(eventually(Duration::from_secs(5), || dropped.lock().unwrap().len() == refusals).await);
    assert!(dropped.lock().unwrap().iter().all(|&len| len == payload.len()), "{:?}", dropped.lock().unwrap());
    assert_eq!(app.connection_count("/drop"), 1);
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_closes_a_silent_client() {
    let closes: Closes = Arc::default();
    let app = App::new();
    app.ws_with_config(
        "/rt",
        WsConfig::default().read_timeout(Some(Duration::from_millis(400))).ping_interval(None),
        recording(&closes),
    );
    let (addr, _server) = serve(&app).await;
    let started = Instant::now();
    let closes2 = closes.clone();
    let (closed_while_talking, client) = blocking(move || {
        let mut client = connect(addr, "/rt");
        // Bytes from the client keep the read deadline moving.
        for i in 0..5 {
            std::thread::sleep(Duration::from_millis(150));
            client.send(Message::text(format!("{i}"))).unwrap();
            assert_eq!(next_text(&mut client), format!("{i}"));
        }
        (closes2.lock().unwrap().len(), client)
    })
    .await;
    assert_eq!(closed_while_talking, 0, "closed although the client kept sending");
    let silent_since = Instant::now();
    // Then silence: dropped (no close frame: 1006) within a generous bound.
    assert!(eventually(Duration::from_secs(4), || !closes.lock().unwrap().is_empty()).await, "never closed");
    let (code, _, at) = closes.lock().unwrap()[0].clone();
    assert_eq!(code, 1006);
    assert!(at - silent_since >= Duration::from_millis(390), "closed too early: {:?}", at - silent_since);
    assert!(at - started >= Duration::from_millis(750 + 390));
    // The client sees the end of the connection, without a close frame.
    let ended = blocking(move || {
        let mut client = client;
        loop {
            match client.read() {
                Ok(Message::Close(_)) => return "close frame".to_owned(),
                Ok(_) => continue,
                Err(e) => return e.to_string(),
            }
        }
    })
    .await;
    assert_ne!(ended, "close frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_timeout_drops_a_client_that_stops_reading() {
    let closes: Closes = Arc::default();
    let app = App::new();
    app.ws_with_config(
        "/wt",
        WsConfig::default()
            .write_timeout(Some(Duration::from_millis(400)))
            // Backpressure must not be what ends it.
            .max_backpressure(64 << 20),
        recording(&closes),
    );
    let (addr, _server) = serve_with_sndbuf(&app, 64 * 1024).await;
    let (stream, ws) = stalled(addr, "/wt", &app).await;
    let sending = Instant::now();
    // 16 MiB queued at once: the socket stalls long before it is written.
    let payload = blaze_tokio::Bytes::from(vec![1u8; 64 * 1024]);
    for _ in 0..256 {
        ws.send_binary(payload.clone()).unwrap();
    }
    // The default write timeout (10 s) would miss this bound.
    assert!(eventually(Duration::from_secs(5), || !closes.lock().unwrap().is_empty()).await, "never dropped");
    let (code, _, at) = closes.lock().unwrap()[0].clone();
    assert_eq!(code, 1006, "a stalled writer is dropped, not closed");
    assert!(at - sending >= Duration::from_millis(390), "dropped too early: {:?}", at - sending);
    assert!(!ws.is_open());
    assert_eq!(app.connection_count("/wt"), 0);
    drop(stream);
}
