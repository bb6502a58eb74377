//! Heartbeats: a client that stops answering pings is closed and its
//! `on_close` runs; one that answers stays.
//!
//! Over loopback these check behaviour: never closed before the sum of
//! ping_interval and pong_timeout after the client began to connect, and
//! upper bounds only against a hang. The exact bound (pruned within that
//! sum) is asserted on virtual time by
//! `sim-tests/tests/scenarios/partition.rs`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks, WsConfig};
use common::*;

fn app(closes: Arc<Mutex<Vec<(u16, Instant)>>>) -> App {
    let app = App::new();
    app.config(WsConfig::default().ping_interval(Some(Duration::from_millis(100))).pong_timeout(Duration::from_millis(200)));
    app.ws(
        "/hb",
        Callbacks::new().on_close(move |_ws, code, _| closes.lock().unwrap().push((code, Instant::now()))),
    );
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_after_ping_interval_plus_pong_timeout() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let app = app(closes.clone());
    let (addr, _server) = serve(&app).await;
    // tungstenite answers pings only while it reads; this client never reads.
    let started = Instant::now();
    let client = blocking(move || connect(addr, "/hb")).await;
    assert!(eventually(Duration::from_secs(30), || !closes.lock().unwrap().is_empty()).await, "never closed");
    let (code, at) = closes.lock().unwrap()[0];
    assert_eq!(code, 1006, "a dead peer sends no close frame");
    // `started` is before the client connected: no server deadline can
    // start earlier.
    let elapsed = at - started;
    assert!(elapsed >= Duration::from_millis(300), "closed before ping_interval + pong_timeout: {elapsed:?}");
    assert_eq!(closes.lock().unwrap().len(), 1);
    assert_eq!(app.connection_count("/hb"), 0);
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_answering_pings_stays_connected() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let app = app(closes.clone());
    let (addr, _server) = serve(&app).await;
    let seen = closes.clone();
    let (pings, closed_while_connected) = blocking(move || {
        let mut client = connect(addr, "/hb");
        set_timeout(&client, Duration::from_millis(50));
        let mut pings = 0;
        // Until the server has pinged five times and several pong timeouts
        // (200 ms) have passed since the connection opened, however long
        // that takes on a loaded machine (bounded only against a hang).
        let opened = Instant::now();
        let give_up = opened + Duration::from_secs(30);
        while pings < 5 || opened.elapsed() < Duration::from_millis(1200) {
            assert!(Instant::now() < give_up, "only {pings} pings in 30 s");
            match client.read() {
                Ok(tungstenite::Message::Ping(_)) => pings += 1, // tungstenite queues the pong
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("connection dropped: {e}"),
            }
            let _ = client.flush();
        }
        // Checked before `client` drops and closes the connection.
        (pings, seen.lock().unwrap().len())
    })
    .await;
    assert!(pings >= 5, "expected a ping after every 100 ms of silence, got {pings}");
    assert_eq!(closed_while_connected, 0);
}
