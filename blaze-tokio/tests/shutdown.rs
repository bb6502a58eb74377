//! Graceful shutdown: every client gets close 1001, every `on_close` runs
//! once, and `serve` returns, at the latest once the drain timeout has
//! dropped the clients that never answer.
//!
//! Over loopback the upper bounds here only guard against a hang; that
//! `serve` returns within the drain timeout (and, with stalled clients, not
//! before it) is asserted on virtual time by
//! `sim-tests/tests/scenarios/shutdown.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_1001_to_every_client_and_runs_every_on_close() {
    let closes = Arc::new(AtomicUsize::new(0));
    let app = App::new();
    app.drain_timeout(Duration::from_secs(3));
    let counter = closes.clone();
    app.ws("/s", Callbacks::new().on_close(move |_, _, _| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let (addr, server) = serve(&app).await;
    let clients: Vec<_> = blocking(move || (0..20).map(|_| connect(addr, "/s")).collect()).await;
    assert!(eventually(Duration::from_secs(30), || app.connection_count("/s") == 20).await);

    app.shutdown();
    let codes = blocking(move || {
        clients.into_iter().map(|mut c| expect_close(&mut c).0).collect::<Vec<_>>()
    })
    .await;
    assert!(codes.iter().all(|&c| c == 1001), "{codes:?}");
    tokio::time::timeout(Duration::from_secs(30), server).await.expect("serve returns").unwrap().unwrap();
    assert_eq!(closes.load(Ordering::SeqCst), 20);
    assert_eq!(app.total_connections(), 0);
    // The port is released: nothing accepts any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_clients_that_never_answer_within_the_drain_timeout() {
    let closes = Arc::new(AtomicUsize::new(0));
    let app = App::new();
    app.drain_timeout(Duration::from_millis(300));
    let counter = closes.clone();
    app.ws("/s", Callbacks::new().on_close(move |_, _, _| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let (addr, server) = serve(&app).await;
    // These clients never read, so they never answer the close frame.
    let clients: Vec<_> = blocking(move || (0..5).map(|_| connect(addr, "/s")).collect()).await;
    assert!(eventually(Duration::from_secs(30), || app.connection_count("/s") == 5).await);
    let started = Instant::now();
    app.shutdown();
    // The close timeout (5 s by default) is far off: only the drain
    // timeout can end these connections, so `serve` returns, and not before it.
    tokio::time::timeout(Duration::from_secs(30), server).await.expect("serve returns").unwrap().unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "serve returned after {took:?}, before the drain timeout");
    assert_eq!(closes.load(Ordering::SeqCst), 5);
    assert_eq!(app.total_connections(), 0);
    drop(clients);
}
