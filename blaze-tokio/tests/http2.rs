//! Blaze in a plain hyper 1 server (feature `hyper`): WebSockets over
//! HTTP/2 (RFC 8441 extended CONNECT, hyper's h2 server with
//! `enable_connect_protocol()`), driven by the `h2` crate's client with
//! tungstenite framing the WebSocket; and the same entry point serving
//! HTTP/1.1 upgrades.

mod common;
#[path = "h2_client/mod.rs"]
mod h2_client;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blaze_tokio::{guard, App, Callbacks, Response};
use common::{blocking, connect, eventually, serve};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A hyper server on a free loopback port: HTTP/2 only (prior
/// knowledge) with extended CONNECT, or HTTP/1.1 with upgrades.
async fn serve_hyper(app: &App, http2: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                return;
            };
            let app = app.clone();
            let service = hyper::service::service_fn(move |request| {
                let response = blaze_tokio::hyper::upgrade(&app, request, Some(remote));
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                if http2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .enable_connect_protocol()
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
                }
            });
        }
    });
    addr
}

fn chat_app() -> App {
    let app = App::new();
    app.ws(
        "/echo",
        Callbacks::new().on_message(|ws, msg| {
            let _ = ws.send(msg);
        }),
    );
    app.ws(
        "/chat",
        Callbacks::new().on_message(|ws, msg| {
            let _ = ws.broadcast(format!("{}: {msg}", ws.id()));
        }),
    );
    app.ws("/private", Callbacks::new()).guard(guard(|req, _| {
        if req.bearer_token() == Some("secret") {
            Ok(())
        } else {
            Err(Response::text(401, "no"))
        }
    }));
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_echo_and_broadcast_with_http1_clients() {
    let app = chat_app();
    let h2_addr = serve_hyper(&app, true).await;
    let (blaze_addr, _blaze) = serve(&app).await;
    let mut h2 = h2_client::h2_connect(h2_addr).await;
    // Two WebSockets multiplexed on one HTTP/2 connection.
    let mut echo = h2_client::open(&mut h2, h2_addr, "/echo", &[("sec-websocket-version", "13")]).await.unwrap();
    let chat = h2_client::open(&mut h2, h2_addr, "/chat", &[("sec-websocket-version", "13")]).await.unwrap();
    let h1_chat = blocking(move || connect(blaze_addr, "/chat")).await;
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/chat") == 2).await);
    assert_eq!(app.connection_count("/echo"), 1);

    let payload = "x".repeat(100_000);
    let echoed = blocking(move || {
        echo.send("over h2".into()).unwrap();
        assert_eq!(h2_client::next_text(&mut echo), "over h2");
        // Larger than the HTTP/2 flow-control windows (64 KiB initially).
        echo.send(payload.clone().into()).unwrap();
        h2_client::next_text(&mut echo) == payload
    })
    .await;
    assert!(echoed);

    assert_eq!(app.broadcast("/chat", "to all").unwrap(), 2);
    let (mut chat, mut h1_chat) = blocking(move || {
        let (mut chat, mut h1_chat) = (chat, h1_chat);
        assert_eq!(h2_client::next_text(&mut chat), "to all");
        assert_eq!(common::next_text(&mut h1_chat), "to all");
        // The HTTP/2 client's message, broadcast by its handler, reaches
        // the HTTP/1.1 client of Blaze's own listener.
        chat.send("hello from h2".into()).unwrap();
        let from_h2 = common::next_text(&mut h1_chat);
        assert!(from_h2.ends_with(": hello from h2"), "{from_h2}");
        assert_eq!(h2_client::next_text(&mut chat), from_h2);
        (chat, h1_chat)
    })
    .await;
    blocking(move || {
        chat.close(None).unwrap();
        // tungstenite completes the closing handshake on its next read.
        while chat.read().is_ok() {}
        h1_chat.close(None).unwrap();
        while h1_chat.read().is_ok() {}
    })
    .await;
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/chat") == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_blaze_refuses_get_its_status() {
    let app = chat_app();
    let addr = serve_hyper(&app, true).await;
    let mut h2 = h2_client::h2_connect(addr).await;
    let version = [("sec-websocket-version", "13")];
    assert_eq!(h2_client::open(&mut h2, addr, "/echo", &[("sec-websocket-version", "8")]).await.err(), Some(426));
    assert_eq!(h2_client::open(&mut h2, addr, "/echo", &[]).await.err(), Some(426));
    assert_eq!(h2_client::open(&mut h2, addr, "/private", &version).await.err(), Some(401));
    assert_eq!(h2_client::open(&mut h2, addr, "/nowhere", &version).await.err(), Some(404));
    // A plain GET and a CONNECT for another protocol are not WebSockets.
    assert_eq!(h2_client::open_with(&mut h2, addr, "GET", None, "/echo", &version).await.err(), Some(426));
    assert_eq!(
        h2_client::open_with(&mut h2, addr, "CONNECT", Some("not-websocket"), "/echo", &version).await.err(),
        Some(426)
    );
    // The connection survives all of that and still upgrades.
    let mut ws = h2_client::open(
        &mut h2,
        addr,
        "/private",
        &[("sec-websocket-version", "13"), ("authorization", "Bearer secret")],
    )
    .await
    .unwrap();
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/private") == 1).await);
    blocking(move || ws.close(None)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_http2_websockets_with_1001() {
    let closes = Arc::new(AtomicUsize::new(0));
    let app = App::new();
    let counter = closes.clone();
    app.ws(
        "/chat",
        Callbacks::new().on_close(move |_, _, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let addr = serve_hyper(&app, true).await;
    let mut h2 = h2_client::h2_connect(addr).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(h2_client::open(&mut h2, addr, "/chat", &[("sec-websocket-version", "13")]).await.unwrap());
    }
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/chat") == 3).await);
    app.shutdown();
    let codes = blocking(move || clients.iter_mut().map(h2_client::expect_close).collect::<Vec<_>>()).await;
    assert_eq!(codes, [1001; 3]);
    assert!(eventually(Duration::from_secs(10), || closes.load(Ordering::SeqCst) == 3).await);
    assert_eq!(app.total_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_hyper_http1_upgrades_run_on_blaze() {
    let app = chat_app();
    let addr = serve_hyper(&app, false).await;
    blocking(move || {
        let mut client = connect(addr, "/echo");
        client.send("over hyper".into()).unwrap();
        assert_eq!(common::next_text(&mut client), "over hyper");
        assert_eq!(common::connect_rejected(addr, "/private").0, 401);
        assert_eq!(common::connect_rejected(addr, "/nowhere").0, 404);
    })
    .await;
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/echo") == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_client_is_cut_off_by_backpressure_while_another_receives_everything() {
    const LIMIT: usize = 128 * 1024;
    const MESSAGES: usize = 64;
    let closes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = App::new();
    app.config(blaze_tokio::WsConfig::default().max_backpressure(LIMIT).close_timeout(Duration::from_secs(2)));
    let record = closes.clone();
    app.ws("/feed", Callbacks::new().on_close(move |ws, code, _| record.lock().unwrap().push((ws.id(), code))));
    let addr = serve_hyper(&app, true).await;
    // Separate HTTP/2 connections: streams of one connection share its
    // flow-control window, so a stalled stream would stall its siblings
    // by HTTP/2's rules, not Blaze's.
    let mut stalled_conn = h2_client::h2_connect(addr).await;
    let stalled = h2_client::open_stalled(&mut stalled_conn, addr, "/feed").await;
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/feed") == 1).await);
    let stalled_id = app.connections("/feed")[0].id;
    let mut healthy_conn = h2_client::h2_connect(addr).await;
    let mut healthy =
        h2_client::open(&mut healthy_conn, addr, "/feed", &[("sec-websocket-version", "13")]).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/feed") == 2).await);

    let payload = "x".repeat(16 * 1024);
    let received = Arc::new(AtomicUsize::new(0));
    let progress = received.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let in_order = (0..MESSAGES).all(|i| {
            let in_order = h2_client::next_text(&mut healthy).starts_with(&format!("{i}:"));
            progress.fetch_add(1, Ordering::SeqCst);
            in_order
        });
        (in_order, healthy)
    });
    for i in 0..MESSAGES {
        // Paced by the healthy client (at most 3 messages, 48 KiB, ahead
        // of it however loaded the machine): only the stalled client's
        // queue can pass the bound (1 MiB in all, against 128 KiB queued
        // plus its 64 KiB flow-control window).
        let behind = i.saturating_sub(2);
        assert!(eventually(Duration::from_secs(20), || received.load(Ordering::SeqCst) >= behind).await);
        app.broadcast("/feed", format!("{i}:{payload}")).unwrap();
    }
    let (in_order, healthy) = reader.await.unwrap();
    assert!(in_order, "the healthy client missed or reordered messages");
    assert!(eventually(Duration::from_secs(30), || app.connection(stalled_id).is_none()).await);
    assert_eq!(app.connection_count("/feed"), 1, "the healthy client is still connected");
    // on_close runs once the driver ends (the close frame cannot be
    // written; the close timeout ends it).
    assert!(
        eventually(Duration::from_secs(30), || closes.lock().unwrap().iter().any(|(id, _)| *id == stalled_id)).await
    );
    let closes = closes.lock().unwrap().clone();
    let (_, code) = closes.iter().find(|(id, _)| *id == stalled_id).copied().expect("the stalled one closed");
    assert_eq!(code, 1008, "{closes:?}");
    drop((stalled, healthy));
}
