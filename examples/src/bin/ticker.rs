//! A market ticker: a background task broadcasts a JSON price to every
//! client on `/market` once a second, framed once however many listen.
//!
//! `cargo run -p blaze-examples --bin ticker` then connect to
//! `ws://127.0.0.1:8081/market` (e.g. `python3 -m websockets ws://127.0.0.1:8081/market`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blaze_tokio::{App, Callbacks, Json, Response};
use serde::Serialize;

#[derive(Serialize)]
struct Price {
    symbol: &'static str,
    price: f64,
    timestamp_ms: u128,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1).unwrap_or_else(|| "127.0.0.1:8081".into());
    let app = App::new();
    app.ws(
        "/market",
        Callbacks::new().on_open(|ws| {
            let _ = ws.send_json(&serde_json::json!({"type": "hello", "symbol": "BTC"}));
        }),
    );
    let stats = app.clone();
    app.get("/stats", move |_| {
        let body = serde_json::json!({"listeners": stats.connection_count("/market"), "encodings": stats.encodings()});
        Response::with_body(200, "application/json", body.to_string())
    });

    let ticker = app.clone();
    app.spawn(async move {
        // A deterministic random walk, so the example needs no RNG crate.
        let mut price = 95_000.0_f64;
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        loop {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            price *= 1.0 + ((seed % 2001) as f64 - 1000.0) / 100_000.0;
            let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            let update = Price { symbol: "BTC", price: (price * 100.0).round() / 100.0, timestamp_ms };
            let _ = ticker.broadcast("/market", Json(&update));
            blaze_tokio::delay(Duration::from_secs(1)).await;
        }
    });
    println!("ticker on ws://{addr}/market");
    app.listen(addr).await
}
