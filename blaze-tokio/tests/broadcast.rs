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
    // Both ends of 1,000 connections live in this process.
    ensure_fd_limit(2 * 1000 + 100);
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
    // A sentinel after the ticks: a duplicate (or any extra message)
    // would arrive before it.
    assert_eq!(app.broadcast("/feed", "end").unwrap(), 1000);

    let readers = subscribers.drain(..).enumerate().map(|(n, mut ws)| {
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                // 1,000 readers share two worker threads: more than the default 5 s.
                let got = recv_within_for(&mut ws, Duration::from_secs(10)).await;
                assert_eq!(got, Some(Message::text(format!("tick {i}"))), "client {n}");
            }
            // Nothing extra: no duplicate arrives before the sentinel.
            assert_eq!(recv_within(&mut ws).await, Some(Message::text("end")), "client {n}: the message after the last tick");
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
            // No unwrap here: a panic in a callback is caught by the driver
            // (it closes with 1011); a missing param shows as the room
            // counts below never being reached.
            .on_open(|ws| {
                if let Some(room) = ws.param("room") {
                    ws.join(room);
                }
            })
            .on_message(|ws, text| {
                if let Some(room) = ws.param("room") {
                    let _ = ws.publish(room, text);
                }
            }),
    );
    let (addr, _server) = serve(&app).await;
    let mut red = clients(addr, "/game/red", 3).await;
    let mut blue = clients(addr, "/game/blue", 2).await;
    assert!(eventually(Duration::from_secs(2), || app.topic_count("red") == 3 && app.topic_count("blue") == 2).await);

    red[0].send("for red").unwrap();
    blue[0].send("for blue").unwrap();
    for ws in &mut red {
        assert_eq!(recv_within(ws).await, Some(Message::text("for red")));
    }
    for ws in &mut blue {
        assert_eq!(recv_within(ws).await, Some(Message::text("for blue")));
    }
    // Both rooms' publishes have been delivered, so a leak is already
    // queued: a sentinel published to each room now must be the next
    // message of each of its members.
    assert_eq!(app.publish("red", "red sentinel").unwrap(), 3);
    assert_eq!(app.publish("blue", "blue sentinel").unwrap(), 2);
    for ws in &mut red {
        assert_eq!(recv_within(ws).await, Some(Message::text("red sentinel")), "leaked across rooms");
    }
    for ws in &mut blue {
        assert_eq!(recv_within(ws).await, Some(Message::text("blue sentinel")), "leaked across rooms");
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
    assert_eq!(recv_within(&mut b).await, Some(Message::text("from a")));
    // `a` must not get its own message back: the HTTP broadcast below is
    // sent after `b` got "from a", so it is the sentinel: `a`'s next
    // message must be "hello", not "from a".

    let (status, response) = blocking(move || {
        raw_http(addr, "POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    })
    .await;
    assert_eq!(status, 200);
    assert!(response.ends_with("\r\n\r\n2"));
    assert_eq!(recv_within(&mut a).await, Some(Message::text("hello")), "the sender got its own message back");
    assert_eq!(recv_within(&mut b).await, Some(Message::text("hello")));

    let listed = app.connections("/chat");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.remote_addr.is_some_and(|a| a.ip().is_loopback())));
}
