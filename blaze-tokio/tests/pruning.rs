//! Connections that die leave every registry and topic at once, however
//! they die, and their `on_close` runs exactly once.
//!
//! Over loopback on a possibly loaded machine these tests check behaviour,
//! not deadlines: each connection's pruning is compared to its own start
//! (never before ping_interval + pong_timeout after its client began to
//! connect), with generous upper bounds that only keep a broken build from
//! hanging. The exact virtual-time bounds (pruned within ping_interval +
//! pong_timeout of the cut, and not early) are asserted by the turmoil
//! simulation `sim-tests/tests/scenarios/partition.rs`
//! (`partition_without_fin_is_pruned_within_heartbeat_bound`).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks, WsConfig};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PING_INTERVAL: Duration = Duration::from_millis(300);
const PONG_TIMEOUT: Duration = Duration::from_millis(500);

/// What the server saw, recorded by the callbacks and asserted outside
/// them: per client address, how many `on_open`s, and every `on_close`
/// with its code and time.
#[derive(Default)]
struct Seen {
    opens: HashMap<SocketAddr, usize>,
    closes: HashMap<SocketAddr, Vec<(u16, Instant)>>,
}

type Shared = Arc<Mutex<Seen>>;

/// Handshakes by hand (reading the 101 head up to its blank line); then
/// the socket is never read or written again, like a client whose machine
/// vanished (no FIN, no close frame). Returns the socket and when the
/// client began to connect: no server deadline can start before that.
async fn vanishing_client(addr: SocketAddr) -> (tokio::net::TcpStream, Instant) {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /p HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
            assert!(head.len() < 4096, "no end of the response head");
        }
    })
    .await
    .expect("no 101 response within 10 s");
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    (stream, started)
}

fn app(seen: Shared, ping_interval: Duration, pong_timeout: Duration) -> App {
    let app = App::new();
    app.config(WsConfig::default().ping_interval(Some(ping_interval)).pong_timeout(pong_timeout));
    let on_open = seen.clone();
    app.ws(
        "/p",
        Callbacks::new()
            .on_open(move |ws| {
                ws.join("everyone");
                *on_open.lock().unwrap().opens.entry(ws.remote_addr().unwrap()).or_default() += 1;
            })
            .on_close(move |ws, code, _| {
                let at = Instant::now();
                seen.lock().unwrap().closes.entry(ws.remote_addr().unwrap()).or_default().push((code, at));
            }),
    );
    app
}

fn closes(seen: &Shared) -> usize {
    seen.lock().unwrap().closes.values().map(Vec::len).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_vanished_clients_are_each_pruned_by_the_heartbeat() {
    const CLIENTS: usize = 1000;
    // Both ends of 1,000 connections live in this process.
    ensure_fd_limit(2 * CLIENTS as u64 + 100);
    let seen = Shared::default();
    let app = app(seen.clone(), PING_INTERVAL, PONG_TIMEOUT);
    let (addr, _server) = serve(&app).await;
    // Sequential handshakes may take longer than the heartbeat window on a
    // loaded machine: the first ones can be pruned before the last ones
    // open. That is fine; each is judged against its own start.
    let mut sockets = Vec::new();
    let mut started = HashMap::new();
    for _ in 0..CLIENTS {
        let (socket, at) = vanishing_client(addr).await;
        started.insert(socket.local_addr().unwrap(), at);
        sockets.push(socket);
    }
    // Every one is pruned (generous bound: only against a hang).
    assert!(
        eventually(Duration::from_secs(60), || closes(&seen) >= CLIENTS).await,
        "{} of {CLIENTS} pruned after 60 s",
        closes(&seen)
    );
    assert_eq!(app.connection_count("/p"), 0);
    assert_eq!(app.topic_count("everyone"), 0);
    assert_eq!(app.total_connections(), 0);
    // Exactly once each, even as the sockets now go away too.
    drop(sockets);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.opens.len(), CLIENTS);
    assert!(seen.opens.values().all(|&n| n == 1));
    assert_eq!(seen.closes.len(), CLIENTS);
    let deadline = PING_INTERVAL + PONG_TIMEOUT;
    for (client, closes) in &seen.closes {
        assert_eq!(closes.len(), 1, "{client}: on_close ran {} times", closes.len());
        let (code, at) = closes[0];
        assert_eq!(code, 1006, "{client}: a vanished peer sends no close frame");
        let since_start = at - started[client];
        assert!(
            since_start >= deadline,
            "{client} pruned {since_start:?} after it began to connect, before ping_interval + pong_timeout = {deadline:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reset_or_close_without_a_close_frame_are_pruned_at_once() {
    const CLIENTS: usize = 200;
    let seen = Shared::default();
    // A heartbeat far beyond the test's bounds: whatever prunes these
    // connections is the FIN or RST, not a missed pong.
    let heartbeat = Duration::from_secs(120);
    let app = app(seen.clone(), heartbeat, heartbeat);
    let (addr, _server) = serve(&app).await;
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        sockets.push(vanishing_client(addr).await.0);
    }
    assert!(eventually(Duration::from_secs(30), || app.connection_count("/p") == CLIENTS).await);
    assert_eq!(app.topic_count("everyone"), CLIENTS);
    let mut dropped_at = HashMap::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        if i % 2 == 0 {
            // RST on drop (a zero linger never blocks the thread).
            #[allow(deprecated)]
            socket.set_linger(Some(Duration::ZERO)).unwrap();
        }
        let client = socket.local_addr().unwrap();
        dropped_at.insert(client, Instant::now());
        drop(socket); // FIN (or RST)
    }
    // Well before any heartbeat could (the bound is only against a hang).
    assert!(eventually(Duration::from_secs(30), || closes(&seen) >= CLIENTS).await, "{} pruned", closes(&seen));
    assert_eq!(app.connection_count("/p"), 0);
    assert_eq!(app.topic_count("everyone"), 0);
    assert_eq!(app.total_connections(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.closes.len(), CLIENTS);
    for (client, closes) in &seen.closes {
        assert_eq!(closes.len(), 1, "{client}: on_close ran {} times", closes.len());
        let (code, at) = closes[0];
        assert_eq!(code, 1006, "{client}: no close frame was sent");
        let after = at.checked_duration_since(dropped_at[client]);
        assert!(after.is_some(), "{client} pruned before its socket was closed");
        assert!(after.unwrap() < heartbeat, "{client} pruned by the heartbeat, not by its FIN/RST");
    }
}
