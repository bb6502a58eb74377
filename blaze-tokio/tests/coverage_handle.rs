//! The `WebSocket` handle: `broadcast_others`, `publish_others`,
//! `topics()`, `ws.spawn`, `App::spawn`, `ping`, `header`, `with_local`;
//! and the drop policy end to end (a stalled reader loses messages,
//! `on_error` is told, and after it resumes everything else arrives in
//! order).

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{App, BackpressurePolicy, Callbacks, SendError, WsConfig, WsError};
use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

/// Sends `text`, then reads the next data message.
fn ask(client: &mut Client, text: &str) -> String {
    client.send(Message::text(text)).unwrap();
    next_text(client)
}

/// A room: on open every client is greeted (so it is registered when the
/// test goes on) and joins topic "t" if its query says so. Messages:
/// `others:X` → broadcast_others, `pub:X` → publish_others to "t",
/// `join:T`/`leave:T`, `topics`, anything else is echoed as `echo:...`.
fn room(counts: Arc<Mutex<Vec<usize>>>) -> Callbacks {
    Callbacks::new()
        .on_open(|ws| {
            if ws.query("join") == Some("1") {
                ws.join("t");
            }
            let _ = ws.send("welcome");
        })
        .on_message(move |ws, text| {
            if let Some(body) = text.strip_prefix("others:") {
                counts.lock().unwrap().push(ws.broadcast_others(format!("from {}: {body}", ws.id())).unwrap_or(usize::MAX));
            } else if let Some(body) = text.strip_prefix("pub:") {
                counts.lock().unwrap().push(ws.publish_others("t", format!("topic: {body}")).unwrap_or(usize::MAX));
            } else if let Some(topic) = text.strip_prefix("join:") {
                ws.join(topic);
            } else if let Some(topic) = text.strip_prefix("leave:") {
                ws.leave(topic);
            } else if &*text == "topics" {
                let mut topics = ws.topics();
                topics.sort();
                let _ = ws.send(format!("topics=[{}]", topics.join(",")));
            } else {
                let _ = ws.send(format!("echo:{text}"));
            }
        })
}

fn welcomed(addr: std::net::SocketAddr, path: &str) -> Client {
    let mut client = connect(addr, path);
    assert_eq!(next_text(&mut client), "welcome");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_others_reaches_everyone_on_the_path_but_the_sender() {
    let counts = Arc::new(Mutex::new(Vec::new()));
    let app = App::new();
    app.ws("/room", room(counts.clone()));
    app.ws("/elsewhere", room(Arc::default()));
    let (addr, _server) = serve(&app).await;
    let sender_id_text = blocking(move || {
        let mut a = welcomed(addr, "/room");
        let mut b = welcomed(addr, "/room");
        let mut c = welcomed(addr, "/room");
        let mut other_path = welcomed(addr, "/elsewhere");
        a.send(Message::text("others:hi")).unwrap();
        let got_b = next_text(&mut b);
        let got_c = next_text(&mut c);
        assert_eq!(got_b, got_c);
        // The sender gets nothing: its next message is the echo it asks for.
        assert_eq!(ask(&mut a, "after"), "echo:after");
        // Nor does a connection on another path.
        assert_eq!(ask(&mut other_path, "after"), "echo:after");
        got_b
    })
    .await;
    assert!(sender_id_text.starts_with("from ") && sender_id_text.ends_with(": hi"), "{sender_id_text}");
    assert_eq!(*counts.lock().unwrap(), [2], "broadcast_others counts the receivers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_others_reaches_the_other_topic_members_only() {
    let counts = Arc::new(Mutex::new(Vec::new()));
    let app = App::new();
    app.ws("/room", room(counts.clone()));
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut a = welcomed(addr, "/room?join=1");
        let mut b = welcomed(addr, "/room?join=1");
        let mut c = welcomed(addr, "/room?join=1");
        let mut outsider = welcomed(addr, "/room");
        a.send(Message::text("pub:news")).unwrap();
        assert_eq!(next_text(&mut b), "topic: news");
        assert_eq!(next_text(&mut c), "topic: news");
        assert_eq!(ask(&mut a, "after"), "echo:after");
        assert_eq!(ask(&mut outsider, "after"), "echo:after");
    })
    .await;
    assert_eq!(*counts.lock().unwrap(), [2]);
    assert!(
        eventually(Duration::from_secs(5), || app.topic_count("t") == 0).await,
        "closed connections stayed in the topic: {}",
        app.topic_count("t")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_lists_what_the_connection_joined() {
    let app = App::new();
    app.ws("/room", room(Arc::default()));
    let (addr, _server) = serve(&app).await;
    let (client, replies) = blocking(move || {
        let mut client = welcomed(addr, "/room?join=1");
        let mut replies = vec![ask(&mut client, "topics")];
        client.send(Message::text("join:b")).unwrap();
        client.send(Message::text("join:a")).unwrap();
        replies.push(ask(&mut client, "topics"));
        client.send(Message::text("leave:t")).unwrap();
        client.send(Message::text("leave:a")).unwrap();
        replies.push(ask(&mut client, "topics"));
        client.send(Message::text("leave:b")).unwrap();
        replies.push(ask(&mut client, "topics"));
        (client, replies)
    })
    .await;
    assert_eq!(replies, ["topics=[t]", "topics=[a,b,t]", "topics=[b]", "topics=[]"]);
    assert_eq!((app.topic_count("a"), app.topic_count("b"), app.topic_count("t")), (0, 0, 0));
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_spawn_runs_awaiting_work_off_the_callback() {
    let app = App::new();
    app.ws(
        "/spawn",
        Callbacks::new().on_message(|ws, text| {
            let handle = ws.clone();
            ws.spawn(async move {
                blaze_tokio::delay(Duration::from_millis(100)).await;
                let _ = handle.send(format!("later:{text}"));
            });
            // The callback returns at once: this reply goes out first.
            let _ = ws.send("now");
        }),
    );
    let (addr, _server) = serve(&app).await;
    let replies = blocking(move || {
        let mut client = connect(addr, "/spawn");
        client.send(Message::text("x")).unwrap();
        vec![next_text(&mut client), next_text(&mut client)]
    })
    .await;
    assert_eq!(replies, ["now", "later:x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_spawn_runs_for_the_life_of_the_server() {
    let ticks = Arc::new(AtomicU64::new(0));
    let app = App::new();
    app.ws("/ticker", Callbacks::new().on_open(|ws| {
        let _ = ws.send("welcome");
    }));
    let (addr, server) = serve(&app).await;
    let ticker = app.clone();
    let counter = ticks.clone();
    app.spawn(async move {
        loop {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let _ = ticker.broadcast("/ticker", format!("tick {n}"));
            blaze_tokio::delay(Duration::from_millis(20)).await;
        }
    });
    let received = blocking(move || {
        let mut client = welcomed(addr, "/ticker");
        (0..3).map(|_| next_text(&mut client)).collect::<Vec<_>>()
    })
    .await;
    let numbers: Vec<u64> = received.iter().map(|t| t.strip_prefix("tick ").expect(t).parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{received:?}");
    // Stopped when serve returns.
    app.shutdown();
    tokio::time::timeout(Duration::from_secs(15), server).await.expect("serve returned").unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_shutdown = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), after_shutdown, "the background task outlived serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_sends_its_payload() {
    let results = Arc::new(Mutex::new(Vec::new()));
    let app = App::new();
    let r = results.clone();
    app.ws_with_config(
        "/ping",
        WsConfig::default().ping_interval(None),
        Callbacks::new().on_message(move |ws, text| {
            r.lock().unwrap().push(ws.ping(text.as_bytes()));
            let _ = ws.send("sent");
        }),
    );
    let (addr, _server) = serve(&app).await;
    let seen = blocking(move || {
        let mut client = connect(addr, "/ping");
        client.send(Message::text("payload-123")).unwrap();
        let first = client.read().unwrap();
        let second = client.read().unwrap();
        // Over 125 bytes: refused, nothing sent.
        client.send(Message::text("p".repeat(126))).unwrap();
        let third = client.read().unwrap();
        vec![first, second, third]
    })
    .await;
    assert_eq!(
        seen,
        [Message::Ping(b"payload-123".to_vec().into()), Message::text("sent"), Message::text("sent")]
    );
    let results = results.lock().unwrap();
    assert_eq!(results[0], Ok(()));
    assert!(matches!(results[1], Err(SendError::Invalid(_))), "{:?}", results[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_reads_the_upgrade_request() {
    let app = App::new();
    app.ws(
        "/h",
        Callbacks::new().on_open(|ws| {
            let h = |name| ws.header(name).unwrap_or("<none>").to_owned();
            let _ = ws.send(format!("{}|{}|{}|{}", h("x-custom"), h("X-CUSTOM"), h("user-agent"), h("x-missing")));
        }),
    );
    let (addr, _server) = serve(&app).await;
    let greeting = blocking(move || {
        let mut request = format!("ws://{addr}/h").into_client_request().unwrap();
        request.headers_mut().insert("X-Custom", "value 1".parse().unwrap());
        request.headers_mut().insert("User-Agent", "coverage-test/1.0".parse().unwrap());
        let (mut client, _) = tungstenite::connect(request).unwrap();
        set_timeout(&client, Duration::from_secs(5));
        next_text(&mut client)
    })
    .await;
    assert_eq!(greeting, "value 1|value 1|coverage-test/1.0|<none>");
}

#[derive(Debug)]
struct Counter(u32);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_mutates_per_connection_state() {
    let app = App::new();
    app.ws(
        "/local",
        Callbacks::new()
            .on_open(|ws| ws.set_local(Counter(0)))
            .on_message(|ws, text| {
                let reply = if &*text == "missing" {
                    ws.with_local::<String, _>(|s| s.map_or("none".to_owned(), |s| s.clone()))
                } else {
                    ws.with_local::<Counter, _>(|c| match c {
                        Some(c) => {
                            c.0 += 1;
                            c.0.to_string()
                        }
                        None => "no counter".to_owned(),
                    })
                };
                let _ = ws.send(reply);
            }),
    );
    let (addr, _server) = serve(&app).await;
    let replies = blocking(move || {
        let mut a = connect(addr, "/local");
        let mut b = connect(addr, "/local");
        vec![ask(&mut a, "x"), ask(&mut a, "x"), ask(&mut b, "x"), ask(&mut a, "x"), ask(&mut a, "missing")]
    })
    .await;
    // Each connection its own counter.
    assert_eq!(replies, ["1", "2", "1", "3", "none"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_policy_drops_for_a_stalled_reader_then_delivers_in_order_once_it_reads() {
    const PAYLOAD: usize = 4096;
    let dropped: Arc<Mutex<Vec<usize>>> = Arc::default();
    let app = App::new();
    let seen = dropped.clone();
    app.ws_with_config(
        "/feed",
        WsConfig::default()
            .max_backpressure(32 * 1024)
            .backpressure_policy(BackpressurePolicy::Drop)
            // The stall must not outlast the write timeout.
            .write_timeout(Some(Duration::from_secs(60))),
        Callbacks::new().on_error(move |_ws, error| {
            if let WsError::Dropped { len } = error {
                seen.lock().unwrap().push(*len);
            }
        }),
    );
    let (addr, _server) = serve_with_sndbuf(&app, 64 * 1024).await;
    let stream = blocking(move || raw_ws_connect(addr, "/feed", Some(4096), "")).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/feed") == 1).await);
    let ws = app.connection(app.connections("/feed")[0].id).unwrap();
    let message = |i: usize| format!("{i:06}:{}", "p".repeat(PAYLOAD - 7));

    // Phase 1: the reader is stalled. Send until well past the first drop.
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut i = 0;
    while refused < 20 && i < 4000 {
        match ws.send(message(i)) {
            Ok(()) => accepted.push(i),
            Err(e) => {
                assert_eq!(e, SendError::Backpressure);
                refused += 1;
            }
        }
        i += 1;
        if i % 8 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(refused, 20, "nothing dropped after {i} messages");
    assert!(ws.is_open());
    // on_error hears of the drops while the reader is still stalled: see
    // drop_policy_tells_on_error_while_the_reader_is_still_stalled.

    // Phase 2: the reader resumes; once the backlog is written, later
    // messages are all accepted.
    let expected_total = accepted.len() + 50;
    // Started now (spawn_blocking runs at once; `blocking` would wait to be awaited).
    let reader = tokio::task::spawn_blocking(move || {
        let mut frames = RawFrames::new(stream, Duration::from_secs(10));
        let mut got = Vec::new();
        while got.len() < expected_total {
            match frames.next() {
                Ok(frame) if frame.opcode == 1 => got.push(String::from_utf8(frame.payload).unwrap()),
                Ok(frame) => return Err(format!("unexpected frame {frame:?} after {} messages", got.len())),
                Err(e) => return Err(format!("{e} after {} messages", got.len())),
            }
        }
        let _ = frames.stream.write_all(&masked_frame(true, 8, &1000u16.to_be_bytes()));
        Ok(got)
    });
    assert!(eventually(Duration::from_secs(10), || ws.buffered_amount() == 0).await, "the backlog was never written");
    let first_later = i;
    for j in first_later..first_later + 50 {
        if let Err(e) = ws.send(message(j)) {
            panic!("later message {j} refused ({e}); the reader: {:?}", reader.await.map(|r| r.map(|g| g.len())));
        }
        accepted.push(j);
        // Paced: the reader keeps up, nothing more is dropped.
        while ws.buffered_amount() > 16 * 1024 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let got = tokio::time::timeout(Duration::from_secs(20), reader).await.expect("reader done").unwrap().expect("reader");
    let numbers: Vec<usize> = got.iter().map(|t| t[..6].parse().unwrap()).collect();
    assert_eq!(numbers, accepted, "delivered: exactly the accepted messages, in order");
    assert!(got.iter().all(|t| t.len() == PAYLOAD));
    assert!(eventually(Duration::from_secs(5), || dropped.lock().unwrap().len() == refused).await, "{:?}", dropped);
    assert!(dropped.lock().unwrap().iter().all(|&len| len == PAYLOAD));
}

/// Regression: a driver parked on a full socket was not woken for a
/// `Dropped` event, so `on_error` heard of drops only when the socket
/// drained (never, without a write timeout). `with_conn` now wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_policy_tells_on_error_while_the_reader_is_still_stalled() {
    let dropped: Arc<Mutex<Vec<usize>>> = Arc::default();
    let app = App::new();
    let seen = dropped.clone();
    app.ws_with_config(
        "/feed",
        WsConfig::default()
            .max_backpressure(32 * 1024)
            .backpressure_policy(BackpressurePolicy::Drop)
            .write_timeout(None)
            .ping_interval(None),
        Callbacks::new().on_error(move |_ws, error| {
            if let WsError::Dropped { len } = error {
                seen.lock().unwrap().push(*len);
            }
        }),
    );
    let (addr, _server) = serve_with_sndbuf(&app, 64 * 1024).await;
    let stream = blocking(move || raw_ws_connect(addr, "/feed", Some(4096), "")).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/feed") == 1).await);
    let ws = app.connection(app.connections("/feed")[0].id).unwrap();
    // Fill the queue until a drop, let the socket settle, again, until
    // the kernel buffers are full and the queue stays (the driver parks
    // on a full socket).
    let mut sent = 0;
    for _round in 0..100 {
        while ws.send("q".repeat(4096)).is_ok() {
            sent += 1;
            if sent % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if ws.buffered_amount() > 0 {
            break;
        }
    }
    assert!(ws.buffered_amount() > 0, "the reader is not stalled");
    let before = dropped.lock().unwrap().len();
    // Larger than max_backpressure: refused whenever anything is queued.
    for _ in 0..20 {
        assert_eq!(ws.send("q".repeat(40 * 1024)), Err(SendError::Backpressure));
    }
    let told = eventually(Duration::from_secs(3), || dropped.lock().unwrap().len() >= before + 20).await;
    assert!(told, "on_error told of {} of 20 drops while the reader is stalled", dropped.lock().unwrap().len() - before);
    drop(stream);
}
