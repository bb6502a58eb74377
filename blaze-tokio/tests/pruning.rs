//! Connections that die leave every registry and topic at once, however
//! they die, and their `on_close` runs exactly once.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks, WsConfig};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Handshakes by hand; then the socket is never read or written again,
/// like a client whose machine vanished (no FIN, no close frame).
async fn vanishing_client(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /p HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 129];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
        .await
        .expect("no 101 response within 5 s")
        .unwrap();
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

fn app(closes: Arc<AtomicUsize>) -> App {
    let app = App::new();
    app.config(WsConfig::default().ping_interval(Some(Duration::from_millis(300))).pong_timeout(Duration::from_millis(500)));
    app.ws(
        "/p",
        Callbacks::new()
            .on_open(|ws| {
                ws.join("everyone");
            })
            .on_close(move |_, _, _| {
                closes.fetch_add(1, Ordering::SeqCst);
            }),
    );
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_vanished_clients_are_pruned_within_ping_interval_plus_pong_timeout() {
    // Both ends of 1,000 connections live in this process.
    ensure_fd_limit(2 * 1000 + 100);
    let closes = Arc::new(AtomicUsize::new(0));
    let app = app(closes.clone());
    let (addr, _server) = serve(&app).await;
    let mut sockets = Vec::new();
    for _ in 0..1000 {
        sockets.push(vanishing_client(addr).await);
    }
    let connected_at = Instant::now();
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/p") == 1000).await);
    assert_eq!(app.topic_count("everyone"), 1000);
    // Pruned within 300 ms + 500 ms of the last one's silence (plus slack
    // for 1,000 handshakes and a loaded machine).
    assert!(eventually(Duration::from_secs(4), || app.connection_count("/p") == 0).await);
    let elapsed = connected_at.elapsed();
    assert!(elapsed >= Duration::from_millis(700), "pruned before the deadline: {elapsed:?}");
    assert_eq!(app.topic_count("everyone"), 0);
    assert_eq!(app.total_connections(), 0);
    assert!(eventually(Duration::from_secs(1), || closes.load(Ordering::SeqCst) == 1000).await);
    // Exactly once each, even as the sockets now go away too.
    drop(sockets);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(closes.load(Ordering::SeqCst), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reset_or_close_without_a_close_frame_are_pruned_at_once() {
    let closes = Arc::new(AtomicUsize::new(0));
    let app = app(closes.clone());
    let (addr, _server) = serve(&app).await;
    let mut sockets = Vec::new();
    for _ in 0..200 {
        sockets.push(vanishing_client(addr).await);
    }
    assert!(eventually(Duration::from_secs(3), || app.connection_count("/p") == 200).await);
    for (i, socket) in sockets.into_iter().enumerate() {
        if i % 2 == 0 {
            // RST on drop (a zero linger never blocks the thread).
            #[allow(deprecated)]
            socket.set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(socket); // FIN
    }
    // Well before the 800 ms heartbeat deadline.
    assert!(eventually(Duration::from_millis(600), || app.connection_count("/p") == 0).await);
    assert_eq!(app.topic_count("everyone"), 0);
    assert!(eventually(Duration::from_secs(1), || closes.load(Ordering::SeqCst) == 200).await);
}
