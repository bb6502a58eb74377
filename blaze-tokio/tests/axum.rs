//! Blaze mounted on an axum 0.8 Router (feature `axum`): a real
//! `axum::serve` on a loopback port, the tungstenite client (not ours), and
//! Blaze's own listener beside it for the same app.

mod common;
#[path = "h2_client/mod.rs"]
mod h2_client;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use blaze_tokio::{guard, App, Callbacks, Response, WsConfig};
use common::*;
use tungstenite::client::IntoClientRequest;

/// Serves `router` with `axum::serve` (client addresses attached) on a
/// free loopback port, stopping when `app` shuts down if `graceful`.
async fn serve_axum(router: Router, app: Option<&App>) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let task = match app {
        Some(app) => {
            let stop = app.shutdown_requested();
            tokio::spawn(async move { axum::serve(listener, service).with_graceful_shutdown(stop).await })
        }
        None => tokio::spawn(async move { axum::serve(listener, service).await }),
    };
    (addr, task)
}

fn echo_app() -> App {
    let app = App::new();
    app.ws(
        "/echo",
        Callbacks::new().on_message(|ws, msg| {
            let _ = ws.send(msg);
        }),
    );
    app
}

fn router_for(app: &App) -> Router {
    let stats = app.clone();
    Router::new()
        .route(
            "/api/stats",
            get(move || {
                let app = stats.clone();
                async move { axum::Json(serde_json::json!({ "connections": app.total_connections() })) }
            }),
        )
        .route("/echo", blaze_tokio::axum::upgrade(app))
        .route("/chat", blaze_tokio::axum::upgrade(app))
        .route("/ws", blaze_tokio::axum::route(app, "/chat"))
        .route("/private", blaze_tokio::axum::upgrade(app))
        .route("/rooms/{room}", blaze_tokio::axum::upgrade(app))
}

/// Sends a raw request; returns the status and the response head and
/// body (by its Content-Length: hyper keeps the connection open).
fn raw_response(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0usize);
            if data.len() >= end + 4 + length {
                let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return (status, text);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return (status, text);
            }
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_rest_share_one_axum_port() {
    let app = echo_app();
    let (addr, _server) = serve_axum(router_for(&app), None).await;
    let stats = blocking(move || {
        let mut client = connect(addr, "/echo");
        client.send("hello through axum".into()).unwrap();
        assert_eq!(next_text(&mut client), "hello through axum");
        // The REST endpoint, on the same port, sees the live connection.
        let stats = raw_response(addr, "GET /api/stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        client.close(None).unwrap();
        stats
    })
    .await;
    assert_eq!(stats.0, 200, "{}", stats.1);
    assert!(stats.1.contains(r#"{"connections":1}"#), "{}", stats.1);
    assert!(eventually(Duration::from_secs(10), || app.total_connections() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_clients_of_axum_and_of_blazes_own_listener() {
    let app = App::new();
    app.ws(
        "/chat",
        Callbacks::new().on_message(|ws, msg| {
            let _ = ws.broadcast(format!("{}: {msg}", ws.path()));
        }),
    );
    let (axum_addr, _axum) = serve_axum(router_for(&app), None).await;
    let (blaze_addr, _blaze) = serve(&app).await;
    let (mut via_axum, mut via_blaze, mut via_name) =
        blocking(move || (connect(axum_addr, "/chat"), connect(blaze_addr, "/chat"), connect(axum_addr, "/ws"))).await;
    // `/ws` serves the route `/chat` by name: it counts under `/chat`.
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/chat") == 3).await);
    assert_eq!(app.broadcast("/chat", "from the app").unwrap(), 3);
    let (via_axum, via_blaze, via_name) = blocking(move || {
        for client in [&mut via_axum, &mut via_blaze, &mut via_name] {
            assert_eq!(next_text(client), "from the app");
        }
        // A handler's ws.broadcast from an axum client reaches them all.
        via_axum.send("hi".into()).unwrap();
        for client in [&mut via_axum, &mut via_blaze, &mut via_name] {
            assert_eq!(next_text(client), "/chat: hi");
        }
        (via_axum, via_blaze, via_name)
    })
    .await;
    drop((via_axum, via_blaze, via_name));
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/chat") == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_params_topics_subprotocols_and_compression_through_axum() {
    let app = App::new();
    let config = WsConfig::default().subprotocols(["v2.chat", "v1.chat"]).enable_compression(true);
    app.config(config);
    app.ws(
        "/rooms/:room",
        Callbacks::new().on_open(|ws| {
            let room = ws.param("room").unwrap_or_default().to_owned();
            ws.join(&room);
            let _ = ws.send(format!("room {room}, protocol {:?}", ws.protocol()));
        }),
    );
    let (addr, _server) = serve_axum(router_for(&app), None).await;
    let mut client = blocking(move || {
        let mut request = format!("ws://{addr}/rooms/blue").into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", "v1.chat, v2.chat".parse().unwrap());
        let (mut client, response) = tungstenite::connect(request).unwrap();
        set_timeout(&client, Duration::from_secs(5));
        assert_eq!(response.headers()["sec-websocket-protocol"], "v2.chat");
        assert_eq!(next_text(&mut client), r#"room blue, protocol Some("v2.chat")"#);
        client
    })
    .await;
    assert!(eventually(Duration::from_secs(10), || app.topic_count("blue") == 1).await);
    assert_eq!(app.publish("blue", "to the blue room").unwrap(), 1);
    let client = blocking(move || {
        assert_eq!(next_text(&mut client), "to the blue room");
        client
    })
    .await;
    drop(client);
    // permessage-deflate is negotiated by Blaze (tungstenite does not offer it).
    let (status, head) = blocking(move || {
        raw_response(
            addr,
            &upgrade_request(
                "/rooms/red",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
            ),
        )
    })
    .await;
    assert_eq!(status, 101, "{head}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-extensions: permessage-deflate"), "{head}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_and_origin_checks_reject_with_their_status_through_axum() {
    let app = App::new();
    app.ws(
        "/private",
        Callbacks::new().on_open(|ws| {
            let user = ws.local::<String>().unwrap_or_default();
            let _ = ws.send(format!("hello {user}"));
        }),
    )
    .guard(guard(|req, locals| match req.bearer_token() {
        Some("secret") => {
            locals.insert(String::from("ann"));
            Ok(())
        }
        _ => Err(Response::text(401, "missing or bad token")),
    }));
    app.ws_with_config(
        "/chat",
        WsConfig::default().check_origin(|req| req.header("origin") == Some("https://good.example")),
        Callbacks::new(),
    );
    let (addr, _server) = serve_axum(router_for(&app), None).await;
    blocking(move || {
        assert_eq!(connect_rejected(addr, "/private"), (401, "missing or bad token".into()));
        assert_eq!(connect_rejected(addr, "/private?token=wrong").0, 401);
        let mut client = connect(addr, "/private?token=secret");
        assert_eq!(next_text(&mut client), "hello ann");
        let mut request = format!("ws://{addr}/chat").into_client_request().unwrap();
        request.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
        match tungstenite::connect(request) {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
            other => panic!("expected 403, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrades_get_blazes_400_and_426_through_axum() {
    let app = echo_app();
    let (addr, _server) = serve_axum(router_for(&app), None).await;
    blocking(move || {
        let no_key = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Version: 13\r\n\r\n";
        let (status, response) = raw_response(addr, no_key);
        assert_eq!(status, 400, "{response}");
        assert!(response.contains("Sec-WebSocket-Key"), "{response}");

        let (status, response) = raw_response(addr, &upgrade_request("/echo", "Sec-WebSocket-Version: 8\r\n"));
        assert_eq!(status, 426, "{response}");
        assert!(response.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{response}");

        // A plain request to a WebSocket route: 426, as on Blaze's listener.
        let (status, response) = raw_response(addr, "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(status, 426, "{response}");

        // A path axum routes here but no Blaze route matches: 404.
        let (status, response) = raw_response(addr, &upgrade_request("/rooms/red", "Sec-WebSocket-Version: 13\r\n"));
        assert_eq!(status, 404, "{response}");
    })
    .await;
    assert_eq!(app.total_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_counts_axum_and_blaze_listener_connections_together() {
    let app = App::new();
    app.ws_with_config("/chat", WsConfig::default().max_connections(Some(2)), Callbacks::new());
    let (axum_addr, _axum) = serve_axum(router_for(&app), None).await;
    let (blaze_addr, _blaze) = serve(&app).await;
    let clients = blocking(move || {
        let clients = (connect(axum_addr, "/chat"), connect(blaze_addr, "/chat"));
        assert_eq!(connect_rejected(axum_addr, "/chat").0, 503);
        assert_eq!(connect_rejected(blaze_addr, "/chat").0, 503);
        clients
    })
    .await;
    assert_eq!(app.connection_count("/chat"), 2);
    drop(clients);
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/chat") == 0).await);
    // The places were given back.
    let client = blocking(move || connect(axum_addr, "/chat")).await;
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_axum_connections_with_1001_and_stops_axum() {
    let closes = Arc::new(AtomicUsize::new(0));
    let app = App::new();
    app.drain_timeout(Duration::from_secs(3));
    let counter = closes.clone();
    app.ws(
        "/chat",
        Callbacks::new().on_close(move |_, _, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    );
    // One axum server stops with the app, one does not (to see the 503).
    let (addr, server) = serve_axum(router_for(&app), Some(&app)).await;
    let (other_addr, _other) = serve_axum(router_for(&app), None).await;
    let clients = blocking(move || {
        let mut clients: Vec<_> = (0..3).map(|_| connect(addr, "/chat")).collect();
        clients.push(connect(other_addr, "/chat"));
        clients
    })
    .await;
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/chat") == 4).await);
    app.shutdown();
    let codes = blocking(move || clients.into_iter().map(|mut c| expect_close(&mut c).0).collect::<Vec<_>>()).await;
    assert_eq!(codes, [1001; 4]);
    assert!(eventually(Duration::from_secs(10), || closes.load(Ordering::SeqCst) == 4).await);
    assert_eq!(app.total_connections(), 0);
    tokio::time::timeout(Duration::from_secs(30), server).await.expect("axum stops with the app").unwrap().unwrap();
    // While shut down, new upgrades are refused.
    let (status, _) = blocking(move || connect_rejected(other_addr, "/chat")).await;
    assert_eq!(status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serves_websockets_over_http2_too() {
    let app = echo_app();
    let (addr, _server) = serve_axum(router_for(&app), None).await;
    // axum::serve speaks HTTP/2 with prior knowledge and enables extended CONNECT.
    let mut h2 = h2_client::h2_connect(addr).await;
    let mut ws = h2_client::open(&mut h2, addr, "/echo", &[("sec-websocket-version", "13")]).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/echo") == 1).await);
    blocking(move || {
        ws.send("axum over h2".into()).unwrap();
        assert_eq!(h2_client::next_text(&mut ws), "axum over h2");
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    })
    .await;
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/echo") == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_run_on_axum_connections() {
    let app = App::new();
    app.config(
        WsConfig::default().ping_interval(Some(Duration::from_millis(200))).pong_timeout(Duration::from_millis(500)),
    );
    app.ws("/chat", Callbacks::new());
    let (addr, _server) = serve_axum(router_for(&app), None).await;
    let (mut answering, silent) = blocking(move || (connect(addr, "/chat"), connect(addr, "/chat"))).await;
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/chat") == 2).await);
    let answering = blocking(move || {
        // Blaze pings; tungstenite answers each ping as it reads.
        loop {
            match answering.read().expect("read") {
                tungstenite::Message::Ping(_) => break,
                other => panic!("expected a ping, got {other:?}"),
            }
        }
        answering
    })
    .await;
    // The client that never reads never answers: the pong timeout drops
    // it; the one that answers stays (it reads on in the background).
    let keep_reading = std::thread::spawn(move || {
        let mut answering = answering;
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if answering.read().is_err() {
                return false;
            }
        }
        true
    });
    assert!(eventually(Duration::from_secs(20), || app.connection_count("/chat") == 1).await);
    assert!(
        tokio::task::spawn_blocking(move || keep_reading.join().unwrap()).await.unwrap(),
        "the answering client was closed"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_limits_apply_to_axum_connections() {
    let app = App::new();
    app.ws_with_config(
        "/echo",
        WsConfig::default().max_message_size(1024),
        Callbacks::new().on_message(|ws, msg| {
            let _ = ws.send(msg);
        }),
    );
    let (addr, _server) = serve_axum(router_for(&app), None).await;
    let code = blocking(move || {
        let mut client = connect(addr, "/echo");
        client.send("x".repeat(1024).into()).unwrap();
        assert_eq!(next_text(&mut client).len(), 1024);
        client.send("x".repeat(1025).into()).unwrap();
        expect_close(&mut client).0
    })
    .await;
    assert_eq!(code, 1009);
}
