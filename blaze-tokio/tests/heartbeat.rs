//! Heartbeats: a client that stops answering pings is closed and its
//! `on_close` runs; one that answers stays.

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
    assert!(eventually(Duration::from_secs(3), || !closes.lock().unwrap().is_empty()).await);
    let (code, at) = closes.lock().unwrap()[0];
    assert_eq!(code, 1006, "a dead peer sends no close frame");
    let elapsed = at - started;
    assert!(elapsed >= Duration::from_millis(300), "closed too early: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "closed too late: {elapsed:?}");
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
        let end = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < end {
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
    assert!(pings >= 5, "expected a ping every 100 ms of silence, got {pings}");
    assert_eq!(closed_while_connected, 0);
}
