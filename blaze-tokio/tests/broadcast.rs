//! Broadcast and topics at scale: every client receives every message once
//! and in order, each broadcast is framed once, topics isolate rooms.

mod common;

use std::time::Duration;

use blaze_tokio::{App, Callbacks, Message, WsStream};
use common::*;

async fn clients(addr: std::net::SocketAddr, path: &str, n: usize) -> Vec<WsStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(blaze_tokio::connect(&format!("ws://{addr}{path}")).await.expect("connect"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_to_1000_clients_arrives_once_in_order_with_one_encoding_each() {
    let app = App::new();
    app.ws("/feed", Callbacks::new());
    let (addr, _server) = serve(&app).await;
    let mut subscribers = clients(addr, "/feed", 1000).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/feed") == 1000).await);

    const MESSAGES: usize = 100;
    let before = app.encodings();
    for i in 0..MESSAGES {
        assert_eq!(app.broadcast("/feed", format!("tick {i}")).unwrap(), 1000);
    }
    assert_eq!(app.encodings() - before, MESSAGES as u64, "one encoding per broadcast");

    let readers = subscribers.drain(..).map(|mut ws| {
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let got = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.expect("in time");
                assert_eq!(got, Some(Message::text(format!("tick {i}"))));
            }
            // Nothing extra: no duplicate arrives.
            let extra = tokio::time::timeout(Duration::from_millis(50), ws.recv()).await;
            assert!(extra.is_err(), "unexpected extra message {extra:?}");
        })
    });
    for reader in readers.collect::<Vec<_>>() {
        reader.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_isolate_rooms_and_are_left_on_close() {
    let app = App::new();
    app.ws(
        "/game/:room",
        Callbacks::new()
            .on_open(|ws| {
                ws.join(ws.param("room").unwrap());
            })
            .on_message(|ws, text| {
                let _ = ws.publish(ws.param("room").unwrap(), text);
            }),
    );
    let (addr, _server) = serve(&app).await;
    let mut red = clients(addr, "/game/red", 3).await;
    let mut blue = clients(addr, "/game/blue", 2).await;
    assert!(eventually(Duration::from_secs(2), || app.topic_count("red") == 3 && app.topic_count("blue") == 2).await);

    red[0].send("for red").unwrap();
    blue[0].send("for blue").unwrap();
    for ws in &mut red {
        assert_eq!(ws.recv().await, Some(Message::text("for red")));
    }
    for ws in &mut blue {
        assert_eq!(ws.recv().await, Some(Message::text("for blue")));
    }
    for ws in red.iter_mut().chain(blue.iter_mut()) {
        assert!(tokio::time::timeout(Duration::from_millis(100), ws.recv()).await.is_err(), "leaked across rooms");
    }
    drop(red);
    assert!(eventually(Duration::from_secs(2), || app.topic_count("red") == 0).await);
    assert_eq!(app.topic_count("blue"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_except_skips_the_sender_and_http_routes_can_broadcast() {
    let app = App::new();
    let relay = app.clone();
    app.ws(
        "/chat",
        Callbacks::new().on_message(move |ws, text| {
            let _ = relay.broadcast_except("/chat", text, ws.id());
        }),
    );
    let poster = app.clone();
    app.post("/broadcast", move |req| {
        let sent = poster.broadcast("/chat", req.text().unwrap_or_default().to_owned()).unwrap();
        blaze_tokio::Response::text(200, sent.to_string())
    });
    let (addr, _server) = serve(&app).await;
    let mut a = blaze_tokio::connect(&format!("ws://{addr}/chat")).await.unwrap();
    let mut b = blaze_tokio::connect(&format!("ws://{addr}/chat")).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || app.connection_count("/chat") == 2).await);
    a.send("from a").unwrap();
    assert_eq!(b.recv().await, Some(Message::text("from a")));
    assert!(tokio::time::timeout(Duration::from_millis(100), a.recv()).await.is_err());

    let (status, response) = blocking(move || {
        raw_http(addr, "POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    })
    .await;
    assert_eq!(status, 200);
    assert!(response.ends_with("\r\n\r\n2"));
    assert_eq!(a.recv().await, Some(Message::text("hello")));
    assert_eq!(b.recv().await, Some(Message::text("hello")));

    let listed = app.connections("/chat");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.remote_addr.is_some_and(|a| a.ip().is_loopback())));
}
