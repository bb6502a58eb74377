//! Control frames in the API (issue 16): `on_ping` / `on_pong` in every
//! handler style, `ws.pong(..)`, and stream style's `recv_frame()`; the
//! automatic pong and the heartbeat work whatever the handler does.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{App, Bytes, Callbacks, Frame, Handler, WebSocket, WsConfig};
use common::*;
use tungstenite::Message;

/// Reads the next frame that is not a ping from the server's heartbeat.
fn next_non_ping(client: &mut Client) -> Message {
    loop {
        match client.read().expect("read") {
            Message::Ping(_) => continue,
            other => return other,
        }
    }
}

fn text(s: &str) -> Message {
    Message::Text(s.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_on_ping_and_on_pong_see_control_frames_after_the_automatic_pong() {
    let app = App::new();
    app.ws(
        "/cb",
        Callbacks::new()
            .on_ping(|ws, payload| {
                let _ = ws.send(format!("saw ping {}", String::from_utf8_lossy(&payload)));
                let _ = ws.pong(b"handler-pong");
            })
            .on_pong(|ws, payload| {
                let _ = ws.send(format!("saw pong {}", String::from_utf8_lossy(&payload)));
            }),
    );
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut client = connect(addr, "/cb");
        client.send(Message::Ping(Bytes::from_static(b"hi"))).unwrap();
        // The automatic pong is queued as the ping is read, before the handler runs.
        assert_eq!(next_non_ping(&mut client), Message::Pong(Bytes::from_static(b"hi")));
        assert_eq!(next_non_ping(&mut client), text("saw ping hi"));
        assert_eq!(next_non_ping(&mut client), Message::Pong(Bytes::from_static(b"handler-pong")));
        client.send(Message::Pong(Bytes::from_static(b"p1"))).unwrap();
        assert_eq!(next_non_ping(&mut client), text("saw pong p1"));
    })
    .await;
}

struct Observer {
    seen: Mutex<Vec<String>>,
}

impl Handler for Observer {
    fn on_ping(&self, ws: &WebSocket, payload: Bytes) {
        self.seen.lock().unwrap().push(format!("ping {}", String::from_utf8_lossy(&payload)));
        let _ = ws.send("ping seen");
    }
    fn on_pong(&self, ws: &WebSocket, payload: Bytes) {
        self.seen.lock().unwrap().push(format!("pong {}", String::from_utf8_lossy(&payload)));
        let _ = ws.send("pong seen");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_trait_on_ping_and_on_pong_through_an_arc() {
    let observer = Arc::new(Observer { seen: Mutex::new(Vec::new()) });
    let app = App::new();
    // `impl Handler for Arc<H>`: the test keeps a clone to look at.
    app.ws("/trait", observer.clone());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut client = connect(addr, "/trait");
        client.send(Message::Ping(Bytes::from_static(b"a"))).unwrap();
        assert_eq!(next_non_ping(&mut client), Message::Pong(Bytes::from_static(b"a")));
        assert_eq!(next_non_ping(&mut client), text("ping seen"));
        client.send(Message::Pong(Bytes::from_static(b"b"))).unwrap();
        assert_eq!(next_non_ping(&mut client), text("pong seen"));
    })
    .await;
    assert_eq!(*observer.seen.lock().unwrap(), ["ping a", "pong b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_frame_reports_text_binary_ping_pong_and_close_with_code_and_reason() {
    let closed = Arc::new(Mutex::new(None));
    let app = App::new();
    let record = closed.clone();
    app.ws_stream("/frames", move |mut ws| {
        let record = record.clone();
        async move {
            while let Some(frame) = ws.recv_frame().await {
                let reply = match frame {
                    Frame::Text(t) => format!("text {t}"),
                    Frame::Binary(b) => format!("binary {}", b.len()),
                    Frame::Ping(p) => format!("ping {}", String::from_utf8_lossy(&p)),
                    Frame::Pong(p) => format!("pong {}", String::from_utf8_lossy(&p)),
                    Frame::Close { code, reason } => {
                        *record.lock().unwrap() = Some((code, reason));
                        continue;
                    }
                    other => format!("other {other:?}"),
                };
                let _ = ws.send(reply);
            }
            // After Close, None: the loop ended.
            assert!(ws.recv_frame().await.is_none());
        }
    });
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut client = connect(addr, "/frames");
        client.send(text("hello")).unwrap();
        assert_eq!(next_non_ping(&mut client), text("text hello"));
        client.send(Message::Binary(Bytes::from_static(&[1, 2, 3]))).unwrap();
        assert_eq!(next_non_ping(&mut client), text("binary 3"));
        client.send(Message::Ping(Bytes::from_static(b"x"))).unwrap();
        assert_eq!(next_non_ping(&mut client), Message::Pong(Bytes::from_static(b"x")));
        assert_eq!(next_non_ping(&mut client), text("ping x"));
        client.send(Message::Pong(Bytes::from_static(b"y"))).unwrap();
        assert_eq!(next_non_ping(&mut client), text("pong y"));
        client
            .close(Some(tungstenite::protocol::CloseFrame { code: close_code(4001), reason: "bye".into() }))
            .unwrap();
        let (code, _) = expect_close(&mut client);
        assert_eq!(code, 4001);
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || closed.lock().unwrap().is_some()).await);
    assert_eq!(*closed.lock().unwrap(), Some((4001, "bye".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_skips_control_frames_that_recv_frame_would_see() {
    let app = App::new();
    app.ws_stream("/echo", |mut ws| async move {
        while let Some(msg) = ws.recv().await {
            let _ = ws.send(msg);
        }
    });
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut client = connect(addr, "/echo");
        for i in 0..40 {
            client.send(Message::Ping(Bytes::from(format!("{i}")))).unwrap();
            client.send(Message::Pong(Bytes::from(format!("{i}")))).unwrap();
        }
        client.send(text("after")).unwrap();
        let mut pongs = 0;
        loop {
            match client.read().expect("read") {
                Message::Pong(_) => pongs += 1,
                Message::Text(t) => {
                    assert_eq!(t.as_str(), "after");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(pongs, 40, "every ping answered");
    })
    .await;
}

/// A stream handler that never reads and a callbacks handler that does
/// nothing with pongs both keep their live clients through many
/// heartbeats (the pong deadline is met at read time, whatever the handler
/// does with the frames), while a silent client on the same route is
/// dropped by the same heartbeat. 1,500 pongs are more than the stream
/// inbox (64) and the core's backlog (1,024 events) hold: were pongs kept
/// for a handler that never reads until those bounds, reading would stop
/// and the live client would miss its pong deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_works_whatever_the_handler_does_with_control_frames() {
    let config = WsConfig::default()
        .ping_interval(Some(Duration::from_millis(2)))
        .pong_timeout(Duration::from_millis(500));
    let app = App::new();
    app.ws_stream_with_config("/never-reads", config.clone(), |ws| async move {
        // Holds the connection and never calls recv or recv_frame: more
        // pongs arrive than the inbox keeps for recv_frame.
        std::future::pending::<()>().await;
        drop(ws);
    });
    app.ws_with_config("/ignores", config, Callbacks::new().on_pong(|_, _| {}));
    let (addr, _server) = serve(&app).await;
    for path in ["/never-reads", "/ignores"] {
        blocking(move || {
            let mut client = connect(addr, path);
            let mut pings = 0;
            // Heartbeats every 2 ms of silence, answered by tungstenite as
            // it reads, for far longer than the 500 ms pong timeout.
            while pings < 1500 {
                match client.read() {
                    Ok(Message::Ping(_)) => pings += 1,
                    Ok(other) => panic!("{path}: unexpected {other:?}"),
                    Err(e) => panic!("{path}: connection ended after {pings} pings: {e}"),
                }
            }
            client.send(Message::Ping(Bytes::from_static(b"still"))).unwrap();
            assert_eq!(next_non_ping(&mut client), Message::Pong(Bytes::from_static(b"still")));
        })
        .await;
    }
    // A client that never answers is dropped by the same heartbeat.
    let silent = blocking(move || raw_ws_connect(addr, "/ignores", None, "")).await;
    assert!(eventually(Duration::from_secs(10), || app.connection_count("/ignores") == 0).await);
    drop(silent);
}
