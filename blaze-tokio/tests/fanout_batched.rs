//! Broadcasts made by handlers are delivered in batches (one per batch of
//! events a connection reads; blaze-server's `fanout`). These tests pin
//! what batching must not change: every receiver gets every message once,
//! in each publisher's order, interleaved with the publisher's direct
//! sends in program order, to the members there when it was made.

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

fn text(message: Option<Message>) -> String {
    message.and_then(|m| m.as_text().map(str::to_owned)).expect("a text message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_publishers_at_once_reach_everyone_once_in_each_publishers_order() {
    // A chat room where every client publishes, on two worker threads: the
    // publishers' batches are delivered concurrently to the same receivers.
    const CLIENTS: usize = 24;
    const EACH: usize = 150;
    let app = App::new();
    app.ws(
        "/room",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.broadcast(text);
        }),
    );
    let (addr, _server) = serve(&app).await;
    let room = clients(addr, "/room", CLIENTS).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/room") == CLIENTS).await);

    // Each client queues all its messages at once, so the server reads
    // them in a few large batches.
    for (c, ws) in room.iter().enumerate() {
        for seq in 0..EACH {
            ws.send(format!("{c}:{seq}")).unwrap();
        }
    }
    let readers = room.into_iter().enumerate().map(|(me, mut ws)| {
        tokio::spawn(async move {
            let mut next = [0usize; CLIENTS];
            for _ in 0..CLIENTS * EACH {
                let got = text(recv_within_for(&mut ws, Duration::from_secs(20)).await);
                let (from, seq) = got.split_once(':').expect("c:seq");
                let (from, seq): (usize, usize) = (from.parse().unwrap(), seq.parse().unwrap());
                assert_eq!(seq, next[from], "client {me}: publisher {from} out of order (or duplicated)");
                next[from] += 1;
            }
            assert!(next.iter().all(|&n| n == EACH), "client {me}: {next:?}");
            ws
        })
    });
    let mut room = Vec::new();
    for reader in readers.collect::<Vec<_>>() {
        room.push(reader.await.unwrap());
    }
    // Nothing extra is queued behind the last expected message.
    assert_eq!(app.broadcast("/room", "end").unwrap(), CLIENTS);
    for ws in &mut room {
        assert_eq!(recv_within(ws).await, Some(Message::text("end")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_direct_sends_and_broadcasts_arrive_in_program_order() {
    let app = App::new();
    app.ws(
        "/room",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.send(format!("before {text}"));
            let _ = ws.broadcast(format!("all {text}"));
            let _ = ws.broadcast(format!("all again {text}"));
            let _ = ws.send(format!("after {text}"));
        }),
    );
    let (addr, _server) = serve(&app).await;
    let mut room = clients(addr, "/room", 2).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/room") == 2).await);
    const MESSAGES: usize = 50;
    for i in 0..MESSAGES {
        room[0].send(format!("{i}")).unwrap();
    }
    for i in 0..MESSAGES {
        for expected in [format!("before {i}"), format!("all {i}"), format!("all again {i}"), format!("after {i}")] {
            assert_eq!(text(recv_within(&mut room[0]).await), expected);
        }
        for expected in [format!("all {i}"), format!("all again {i}")] {
            assert_eq!(text(recv_within(&mut room[1]).await), expected);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_broadcast_reaches_the_members_of_the_moment_it_is_made() {
    let app = App::new();
    app.ws(
        "/room",
        Callbacks::new().on_message(|ws, text| match text.as_str() {
            "join" => {
                ws.join("t");
                let _ = ws.send("joined");
            }
            // Published while a member, then left: it still gets it.
            "publish, then leave" => {
                let _ = ws.publish("t", "before leaving");
                ws.leave("t");
            }
            // Published before joining: it does not.
            "publish, then join" => {
                let _ = ws.publish("t", "before joining");
                ws.join("t");
                let _ = ws.publish("t", "after joining");
            }
            _ => {}
        }),
    );
    let (addr, _server) = serve(&app).await;
    let mut room = clients(addr, "/room", 2).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/room") == 2).await);
    for ws in &mut room {
        ws.send("join").unwrap();
        assert_eq!(text(recv_within(ws).await), "joined");
    }
    room[0].send("publish, then leave").unwrap();
    room[0].send("publish, then join").unwrap();
    for expected in ["before leaving", "after joining"] {
        assert_eq!(text(recv_within(&mut room[0]).await), expected);
    }
    for expected in ["before leaving", "before joining", "after joining"] {
        assert_eq!(text(recv_within(&mut room[1]).await), expected);
    }
    assert_eq!(app.publish("t", "end").unwrap(), 2);
    for ws in &mut room {
        assert_eq!(recv_within(ws).await, Some(Message::text("end")), "nothing extra");
    }
}
