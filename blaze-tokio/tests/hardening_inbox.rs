//! Issue 10, stream-style inbox: bounded in bytes as well as messages, and
//! a full inbox does not stop the connection from answering pings,
//! registering pongs and handling a close (its messages wait, in order,
//! in the core's bounded queue while the socket is still read).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{App, Message as BlazeMessage, WsConfig};
use common::*;
use tungstenite::Message;

/// What a stream handler saw: the messages `recv` returned, whether the
/// connection was still open after them, and how `recv` ended.
#[derive(Default, Debug)]
struct Seen {
    texts: Vec<String>,
    binaries: Vec<Vec<u8>>,
    open_after: Option<bool>,
    ended: Option<Option<(u16, String)>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_live_client_while_inbox_is_full() {
    let app = App::new();
    app.config(WsConfig::default().ping_interval(Some(Duration::from_millis(200))).pong_timeout(Duration::from_millis(500)));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    app.ws_stream("/busy", move |mut ws| {
        let record = record.clone();
        async move {
            // A handler busy pushing: it does not recv for 3 s, far past
            // the pong timeout, while the client floods it.
            let _ = ws.send("ready");
            tokio::time::sleep(Duration::from_secs(3)).await;
            for _ in 0..200 {
                match recv_within(&mut ws).await {
                    Some(BlazeMessage::Text(text)) => record.lock().unwrap().texts.push(text.to_string()),
                    other => {
                        record.lock().unwrap().ended = Some(other.map(|_| (0, "binary".into())));
                        return;
                    }
                }
            }
            record.lock().unwrap().open_after = Some(ws.is_open());
            let _ = ws.send("got 200");
            // Until the client closes.
            while ws.recv().await.is_some() {}
            record.lock().unwrap().ended = Some(ws.close_status());
        }
    });
    let (addr, _server) = serve(&app).await;
    let outcome = blocking(move || {
        let mut client = connect(addr, "/busy");
        assert_eq!(next_text(&mut client), "ready");
        for i in 0..200 {
            client.send(Message::text(format!("m{i}"))).unwrap();
        }
        // Reading answers the server's pings (tungstenite queues the pong
        // and flushes it on the next read).
        let started = Instant::now();
        let answer = loop {
            match client.read() {
                Ok(Message::Text(text)) => break Ok(text.to_string()),
                Ok(Message::Close(frame)) => break Err(format!("closed by the server: {frame:?}")),
                Ok(_) => continue,
                Err(e) => break Err(format!("connection lost after {:?}: {e}", started.elapsed())),
            }
        };
        if answer.is_ok() {
            client.close(None).unwrap();
            while client.read().is_ok() {}
        }
        answer
    })
    .await;
    assert_eq!(outcome.as_deref(), Ok("got 200"), "the live client was dropped while the handler was busy");
    assert!(eventually(Duration::from_secs(5), || seen.lock().unwrap().ended.is_some()).await);
    let seen = seen.lock().unwrap();
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(seen.texts, expected, "every message, in order");
    assert_eq!(seen.open_after, Some(true));
    // The client's close (no code) ended it, not the heartbeat (1006).
    assert_eq!(seen.ended.as_ref().unwrap().as_ref().map(|(code, _)| *code), Some(1005));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_close_is_handled_while_inbox_is_full() {
    let app = App::new();
    let release = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (go, record) = (release.clone(), seen.clone());
    app.ws_stream("/full", move |mut ws| {
        let (go, record) = (go.clone(), record.clone());
        async move {
            while !go.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            while let Some(message) = recv_within(&mut ws).await {
                if let BlazeMessage::Text(text) = message {
                    record.lock().unwrap().texts.push(text.to_string());
                }
            }
            record.lock().unwrap().ended = Some(ws.close_status());
        }
    });
    let (addr, _server) = serve(&app).await;
    let close_took = blocking(move || {
        let mut client = connect(addr, "/full");
        for i in 0..100 {
            client.send(Message::text(format!("m{i}"))).unwrap();
        }
        // The close comes after the server has read (and queued) those:
        // it filled the inbox first.
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        client.close(None).unwrap();
        loop {
            match client.read() {
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("no close reply while the inbox was full: {e}"),
            }
        }
        started.elapsed()
    })
    .await;
    assert!(close_took < Duration::from_secs(2), "close reply took {close_took:?}");
    // The close completed (on_close ran: the connection is unregistered)
    // while the handler has not received a single message.
    assert!(eventually(Duration::from_secs(3), || app.connection_count("/full") == 0).await, "close never completed");
    assert!(seen.lock().unwrap().texts.is_empty());
    release.store(true, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(5), || seen.lock().unwrap().ended.is_some()).await, "recv never ended");
    let seen = seen.lock().unwrap();
    let expected: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(seen.texts, expected, "every message before the close, in order, then None");
    assert_eq!(seen.ended.as_ref().unwrap().as_ref().map(|(code, _)| *code), Some(1005));
}

/// Kernel buffer size on both ends of the bytes test, so what the server
/// holds is not hidden behind megabytes of autotuned loopback buffers.
const SOCKET_BUFFER: u32 = 64 * 1024;

async fn serve_with_rcvbuf(app: &App, rcvbuf: u32) -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    tokio::spawn(async move { app.serve(listener).await });
    addr
}

/// A raw WebSocket client with a small send buffer (blocking).
fn raw_connect_with_sndbuf(addr: SocketAddr, path: &str, sndbuf: u32) -> TcpStream {
    use std::io::Read;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(sndbuf).unwrap();
    let mut stream = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { socket.connect(addr).await.unwrap().into_std() })
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_is_bounded_in_bytes_before_64_messages() {
    const MESSAGE: usize = 200 * 1024;
    const SENT: usize = 40; // 8 MB: under the old 64-message bound, all of it was taken in
    let app = App::new();
    let release = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (go, record) = (release.clone(), seen.clone());
    app.ws_stream("/big", move |mut ws| {
        let (go, record) = (go.clone(), record.clone());
        async move {
            while !go.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for _ in 0..SENT {
                match recv_within(&mut ws).await {
                    Some(BlazeMessage::Binary(data)) => record.lock().unwrap().binaries.push(data.to_vec()),
                    other => panic!("expected binary, got {other:?}"),
                }
            }
            record.lock().unwrap().open_after = Some(ws.is_open());
        }
    });
    let addr = serve_with_rcvbuf(&app, SOCKET_BUFFER).await;
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut stream = raw_connect_with_sndbuf(addr, "/big", SOCKET_BUFFER);
        for i in 0..SENT {
            let payload = vec![i as u8; MESSAGE];
            stream.write_all(&masked_frame(true, 2, &payload)).unwrap();
            counter.store(i + 1, Ordering::SeqCst);
        }
        stream
    });
    // Wait until the writes stall: no progress for a second.
    let mut last = usize::MAX;
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let now = written.load(Ordering::SeqCst);
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken = written.load(Ordering::SeqCst);
    // New bound: 1 MiB in the inbox (6 messages), 1 MiB in the core's
    // backlog, a partial frame in the read buffer and the small kernel
    // buffers: about 15. The old bound (64 messages) took in all 40.
    assert!(taken < 24, "the server kept reading {taken} messages of 200 KiB for an idle stream handler");
    release.store(true, Ordering::SeqCst);
    let stream = writer.await.unwrap();
    assert!(eventually(Duration::from_secs(10), || seen.lock().unwrap().open_after.is_some()).await, "not all received");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.binaries.len(), SENT);
    for (i, data) in seen.binaries.iter().enumerate() {
        assert!(data.len() == MESSAGE && data.iter().all(|&b| b == i as u8), "message {i} corrupted or out of order");
    }
    assert_eq!(seen.open_after, Some(true));
    drop(stream);
}
