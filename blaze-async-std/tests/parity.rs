//! Parity with the tokio adapter for what `same_behaviour.rs` does not
//! cover: Blaze's own client (`connect`, `connect_with_options`),
//! `App::spawn` and `ws.spawn`, admission (403 from `check_origin` and
//! `allowed_origins`, 503 from `max_connections`, 429 from
//! `max_connections_per_ip`), typed JSON errors, and the drop
//! backpressure policy.
//!
//! Callbacks only record what they see; every assertion runs in the test
//! body (a panic inside a callback is caught by the driver and would only
//! show up as a timeout). Every wait is bounded.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_async_std::{
    App, BackpressurePolicy, Callbacks, ClientError, ClientOptions, Json, Message, WsConfig, WsError, WsStream,
};

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

async fn serve(app: &App) -> (SocketAddr, async_std::task::JoinHandle<std::io::Result<()>>) {
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    (addr, async_std::task::spawn(async move { app.serve(listener).await }))
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    async_std::task::spawn_blocking(f).await
}

/// Connects with Blaze's client, failing the test after [`WAIT`].
async fn open(url: String, options: ClientOptions) -> Result<WsStream, ClientError> {
    match async_std::future::timeout(WAIT, blaze_async_std::connect_with_options(&url, options)).await {
        Ok(result) => result,
        Err(_) => panic!("connecting to {url} took more than {WAIT:?}"),
    }
}

/// The next text message, failing the test (with the caller's line) if
/// none arrives within [`WAIT`] or the connection ends.
#[track_caller]
fn next_text(ws: &mut WsStream) -> impl std::future::Future<Output = String> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        match async_std::future::timeout(WAIT, ws.recv()).await {
            Ok(Some(message)) => message
                .as_text()
                .unwrap_or_else(|| panic!("expected text, got {message:?}, awaited at {caller}"))
                .to_owned(),
            Ok(None) => panic!("connection ended ({:?}), awaited at {caller}", ws.close_status()),
            Err(_) => panic!("no message within {WAIT:?}, awaited at {caller}"),
        }
    }
}

/// The status and body of a rejected upgrade, from tungstenite (a client
/// not ours); `Ok(())` if the upgrade was accepted.
fn upgrade_status(addr: SocketAddr, path: &str, origin: Option<&str>) -> Result<(), (u16, String)> {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client(request, stream) {
        Ok(_) => Ok(()),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("{path}: expected an HTTP answer, got {other}"),
    }
}

/// The status a Blaze client's rejected connection attempt reports.
fn rejected_status(result: Result<WsStream, ClientError>) -> u16 {
    match result {
        Err(ClientError::Handshake(e)) => {
            // `server answered {status} instead of 101`
            let text = e.to_string();
            text.split_whitespace().find_map(|w| w.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
        }
        Err(other) => panic!("expected a rejection, got {other}"),
        Ok(_) => panic!("expected a rejection, got a connection"),
    }
}

#[async_std::test]
async fn blaze_client_connects_with_and_without_options() {
    let app = App::new();
    app.ws(
        "/echo",
        Callbacks::new()
            .on_message(|ws, text| {
                let _ = ws.send(text);
            })
            .on_binary(|ws, data| {
                let _ = ws.send(data);
            }),
    );
    app.ws_with_config(
        "/who",
        WsConfig::default().subprotocols(["v2", "v1"]),
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(format!("{} {}", ws.protocol().unwrap_or("none"), ws.header("x-user").unwrap_or("nobody")));
        }),
    );
    let (addr, _server) = serve(&app).await;

    let mut plain = open(format!("ws://{addr}/echo"), ClientOptions::default()).await.unwrap();
    assert_eq!(plain.protocol(), None);
    for i in 0..20 {
        plain.send(format!("m{i}")).unwrap();
        assert_eq!(next_text(&mut plain).await, format!("m{i}"));
    }
    plain.send_binary(vec![0u8, 1, 2, 255]).unwrap();
    match async_std::future::timeout(WAIT, plain.recv()).await.expect("a binary echo within 5 s") {
        Some(Message::Binary(data)) => assert_eq!(&data[..], &[0u8, 1, 2, 255]),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    // `connect` is `connect_with_options` with the defaults.
    let mut default = async_std::future::timeout(WAIT, blaze_async_std::connect(&format!("ws://{addr}/echo")))
        .await
        .expect("connect within 5 s")
        .unwrap();
    default.send("hi").unwrap();
    assert_eq!(next_text(&mut default).await, "hi");

    let options = ClientOptions::default().protocol("v1").protocol("v2").header("X-User", "ann");
    let mut who = open(format!("ws://{addr}/who"), options).await.unwrap();
    assert_eq!(who.protocol(), Some("v2"), "the server's preference wins");
    assert_eq!(next_text(&mut who).await, "v2 ann");

    // Unknown path: the client reports the status.
    assert_eq!(rejected_status(open(format!("ws://{addr}/nowhere"), ClientOptions::default()).await), 404);
    // Closing from the client: the stream ends with the code it sent.
    drop(who);
    plain.close(4000, "bye").unwrap();
    assert_eq!(async_std::future::timeout(WAIT, plain.recv()).await.expect("the end within 5 s"), None);
    assert_eq!(plain.close_status().map(|(code, _)| code), Some(4000));
    assert!(eventually(WAIT, || app.connection_count("/echo") == 1).await);
}

#[async_std::test]
async fn app_spawn_runs_a_background_task_until_serve_returns() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let app = App::new();
    app.drain_timeout(Duration::from_secs(2));
    app.ws("/ticker", Callbacks::new());
    let (addr, server) = serve(&app).await;
    let mut client = open(format!("ws://{addr}/ticker"), ClientOptions::default()).await.unwrap();
    assert!(eventually(WAIT, || app.connection_count("/ticker") == 1).await);
    {
        let (app2, ticks) = (app.clone(), ticks.clone());
        app.spawn(async move {
            loop {
                let n = ticks.fetch_add(1, Ordering::SeqCst);
                let _ = app2.broadcast("/ticker", Json(serde_json::json!({ "tick": n })));
                blaze_async_std::delay(Duration::from_millis(20)).await;
            }
        });
    }
    // Ticks arrive in order, framed by the background task.
    let first: serde_json::Value = serde_json::from_str(&next_text(&mut client).await).unwrap();
    let first = first["tick"].as_u64().expect("a tick number");
    for n in first + 1..first + 4 {
        let tick: serde_json::Value = serde_json::from_str(&next_text(&mut client).await).unwrap();
        assert_eq!(tick["tick"].as_u64(), Some(n));
    }
    app.shutdown();
    async_std::future::timeout(WAIT, server).await.expect("serve returns within 5 s").unwrap();
    // The task was cancelled with the server: the counter stands still.
    let stopped_at = ticks.load(Ordering::SeqCst);
    async_std::task::sleep(Duration::from_millis(200)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), stopped_at, "the background task outlived serve");
    drop(client);
}

#[async_std::test]
async fn ws_spawn_runs_awaiting_work_off_the_callback() {
    let app = App::new();
    app.ws(
        "/later",
        Callbacks::new()
            .on_open(|ws| {
                let ws = ws.clone();
                let task_ws = ws.clone();
                ws.spawn(async move {
                    blaze_async_std::delay(Duration::from_millis(50)).await;
                    let _ = task_ws.send("from a task");
                });
            })
            .on_message(|ws, text| {
                // Answered after an await, while the callback has returned.
                let task_ws = ws.clone();
                ws.spawn(async move {
                    blaze_async_std::delay(Duration::from_millis(20)).await;
                    let _ = task_ws.send(format!("late {text}"));
                });
                let _ = ws.send(format!("now {}", ws.path()));
            }),
    );
    let (addr, _server) = serve(&app).await;
    let mut client = open(format!("ws://{addr}/later"), ClientOptions::default()).await.unwrap();
    let opened = Instant::now();
    assert_eq!(next_text(&mut client).await, "from a task");
    assert!(opened.elapsed() >= Duration::from_millis(40), "the spawned task did not wait");
    client.send("x").unwrap();
    assert_eq!(next_text(&mut client).await, "now /later", "the callback answers at once");
    assert_eq!(next_text(&mut client).await, "late x");
}

#[async_std::test]
async fn disallowed_origins_get_403() {
    let app = App::new();
    app.ws_with_config("/listed", WsConfig::default().allowed_origins(["http://good.example"]), Callbacks::new());
    app.ws_with_config(
        "/checked",
        WsConfig::default().check_origin(|req| req.header("origin").is_some_and(|o| o.ends_with(".trusted.example"))),
        Callbacks::new(),
    );
    let (addr, _server) = serve(&app).await;
    let statuses = blocking(move || {
        [
            upgrade_status(addr, "/listed", Some("http://evil.example")),
            upgrade_status(addr, "/listed", Some("http://good.example")),
            upgrade_status(addr, "/checked", Some("http://a.trusted.example")),
            upgrade_status(addr, "/checked", Some("http://trusted.example.evil")),
            upgrade_status(addr, "/checked", None),
        ]
    })
    .await;
    let forbidden = Err((403, "origin not allowed".to_owned()));
    assert_eq!(statuses, [forbidden.clone(), Ok(()), Ok(()), forbidden.clone(), forbidden]);
    // Blaze's own client sees the same status.
    let options = ClientOptions::default().header("Origin", "http://evil.example");
    assert_eq!(rejected_status(open(format!("ws://{addr}/listed"), options).await), 403);
}

#[async_std::test]
async fn connections_over_max_connections_get_503_until_one_leaves() {
    let app = App::new();
    app.ws_with_config("/two", WsConfig::default().max_connections(Some(2)), Callbacks::new());
    let (addr, _server) = serve(&app).await;
    let url = format!("ws://{addr}/two");
    let first = open(url.clone(), ClientOptions::default()).await.unwrap();
    let second = open(url.clone(), ClientOptions::default()).await.unwrap();
    assert!(eventually(WAIT, || app.connection_count("/two") == 2).await);
    assert_eq!(blocking(move || upgrade_status(addr, "/two", None)).await, Err((503, "too many connections".into())));
    assert_eq!(rejected_status(open(url.clone(), ClientOptions::default()).await), 503);
    assert_eq!(app.connection_count("/two"), 2);
    drop(first);
    assert!(eventually(WAIT, || app.connection_count("/two") == 1).await);
    let third = open(url, ClientOptions::default()).await.expect("a slot is free again");
    drop((second, third));
}

#[async_std::test]
async fn connections_over_max_connections_per_ip_get_429() {
    let app = App::new();
    app.ws_with_config("/per-ip", WsConfig::default().max_connections_per_ip(Some(1)), Callbacks::new());
    app.ws("/other", Callbacks::new());
    let (addr, _server) = serve(&app).await;
    let url = format!("ws://{addr}/per-ip");
    let first = open(url.clone(), ClientOptions::default()).await.unwrap();
    assert!(eventually(WAIT, || app.connection_count("/per-ip") == 1).await);
    assert_eq!(
        blocking(move || upgrade_status(addr, "/per-ip", None)).await,
        Err((429, "too many connections from this address".into()))
    );
    assert_eq!(rejected_status(open(url.clone(), ClientOptions::default()).await), 429);
    // The limit is per route: another route still admits this address.
    let other = open(format!("ws://{addr}/other"), ClientOptions::default()).await.unwrap();
    drop(first);
    assert!(eventually(WAIT, || app.connection_count("/per-ip") == 0).await);
    let again = open(url, ClientOptions::default()).await.expect("admitted once the first left");
    drop((other, again));
}

#[async_std::test]
async fn malformed_json_gets_an_error_message_and_the_connection_stays_open() {
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let closes: Arc<Mutex<Vec<u16>>> = Arc::default();
    let app = App::new();
    let (seen, closed) = (errors.clone(), closes.clone());
    app.ws(
        "/sum",
        Callbacks::new()
            .on_json(|ws, numbers: BTreeMap<String, i64>| {
                let _ = ws.send(Json(serde_json::json!({ "sum": numbers.values().sum::<i64>() })));
            })
            .on_error(move |_, error| seen.lock().unwrap().push(format!("{error:?}")))
            .on_close(move |_, code, _| closed.lock().unwrap().push(code)),
    );
    let (addr, _server) = serve(&app).await;
    let mut client = open(format!("ws://{addr}/sum"), ClientOptions::default()).await.unwrap();
    for (input, malformed) in [
        (r#"{"a": 1,"#, true),
        (r#"{"a": 2, "b": 3}"#, false),
        (r#"{"a": "two"}"#, true), // JSON, but not the expected shape
        (r#"{"a": 20, "b": 22}"#, false),
    ] {
        client.send(input).unwrap();
        let reply: serde_json::Value = serde_json::from_str(&next_text(&mut client).await).unwrap();
        if malformed {
            assert_eq!(reply["type"], "error", "{input}: {reply}");
            let text = reply["error"].as_str().unwrap_or_else(|| panic!("{input}: {reply}"));
            assert!(text.starts_with("invalid JSON: "), "{input}: {text}");
        } else {
            assert_eq!(reply, serde_json::json!({ "sum": if input.contains("20") { 42 } else { 5 } }));
        }
    }
    assert!(client.is_open());
    assert_eq!(app.connection_count("/sum"), 1);
    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.starts_with("Json(")), "{errors:?}");
    assert!(closes.lock().unwrap().is_empty(), "the connection closed");
}

/// Opens a WebSocket by hand and never reads from it; the 101 head is
/// read up to its blank line (its length depends on the headers).
fn stalled_client(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the 101 response");
        head.push(byte[0]);
        assert!(head.len() < 4096, "no end of the response head");
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

#[async_std::test]
async fn drop_policy_keeps_the_connection_and_reports_every_dropped_message() {
    const LIMIT: usize = 64 * 1024;
    let dropped: Arc<Mutex<Vec<usize>>> = Arc::default();
    let other_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let closes: Arc<Mutex<Vec<u16>>> = Arc::default();
    let app = App::new();
    app.config(WsConfig::default().max_backpressure(LIMIT).backpressure_policy(BackpressurePolicy::Drop));
    let (seen, others, closed) = (dropped.clone(), other_errors.clone(), closes.clone());
    app.ws(
        "/feed",
        Callbacks::new()
            .on_error(move |_, error| match error {
                WsError::Dropped { len } => seen.lock().unwrap().push(*len),
                other => others.lock().unwrap().push(format!("{other:?}")),
            })
            .on_close(move |_, code, _| closed.lock().unwrap().push(code)),
    );
    let (addr, _server) = serve(&app).await;
    let stalled = blocking(move || stalled_client(addr, "/feed")).await;
    assert!(eventually(WAIT, || app.connection_count("/feed") == 1).await);
    let ws = app.connection(app.connections("/feed")[0].id).unwrap();
    let payload = "y".repeat(8 * 1024);
    let mut max_queued = 0;
    let mut sent = 0;
    // Far more than the kernel's buffers absorb; stops once messages are
    // being dropped (bounded either way).
    for _ in 0..4000 {
        let _ = app.broadcast("/feed", payload.as_str());
        sent += 1;
        max_queued = max_queued.max(ws.buffered_amount());
        if dropped.lock().unwrap().len() >= 10 {
            break;
        }
        async_std::task::yield_now().await;
    }
    assert!(eventually(WAIT, || !dropped.lock().unwrap().is_empty()).await, "nothing dropped after {sent} broadcasts");
    let dropped = dropped.lock().unwrap().clone();
    assert!(dropped.iter().all(|&len| len >= payload.len()), "dropped lengths {dropped:?}");
    assert!(max_queued <= LIMIT + payload.len() + 16, "queued {max_queued}");
    assert!(ws.is_open(), "the drop policy keeps the connection");
    assert_eq!(app.connection_count("/feed"), 1);
    assert!(closes.lock().unwrap().is_empty(), "closed: {:?}", closes.lock().unwrap());
    assert!(other_errors.lock().unwrap().is_empty(), "{:?}", other_errors.lock().unwrap());
    drop(stalled);
}
