//! A market ticker: a background task broadcasts a JSON price to every
//! client on `/market` once a second, framed once however many listen.
//!
//! `cargo run -p blaze-examples --bin ticker` then connect to
//! `ws://127.0.0.1:8081/market` (e.g. `python3 -m websockets ws://127.0.0.1:8081/market`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blaze_tokio::{App, Callbacks, Json, Response, Runtime, TokioRuntime};
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
    routes(&app);
    app.spawn(ticker(app.clone(), TokioRuntime));
    println!("ticker on ws://{addr}/market");
    app.listen(addr).await
}

/// The routes: `/market` and `GET /stats` (the tests call this too).
fn routes(app: &App) {
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
}

/// The background task: a price to every listener once a second. The
/// runtime is a parameter (its clock and timers), so the tests run it on
/// virtual time.
async fn ticker<R: Runtime>(ticker: App, rt: R) {
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
        rt.sleep_until(rt.now() + Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listener_gets_a_hello_then_a_price_each_second_framed_once() {
        let app = App::new();
        routes(&app);
        let server = app.test_server();
        let mut ann = server.client("/market").unwrap();
        let mut bob = server.client("/market").unwrap();
        for client in [&mut ann, &mut bob] {
            let hello: serde_json::Value = client.recv_json().unwrap();
            assert_eq!(hello, serde_json::json!({"type": "hello", "symbol": "BTC"}));
        }
        let encodings = app.encodings();
        server.spawn(ticker(app.clone(), server.runtime().clone()));
        let mut last = None;
        for second in 0..5 {
            for client in [&mut ann, &mut bob] {
                let update: serde_json::Value = client.recv_json().expect("a price this second");
                assert_eq!(update["symbol"], "BTC");
                let price = update["price"].as_f64().unwrap();
                assert!((90_000.0..100_000.0).contains(&price), "{price}");
                assert!(client.recv().is_none(), "one price per second");
                last = Some(price);
            }
            assert_eq!(app.encodings() - encodings, second + 1, "each price framed once for both");
            server.advance(Duration::from_secs(1));
        }
        assert!(last.is_some());
    }

    #[test]
    fn stats_count_the_listeners() {
        let app = App::new();
        routes(&app);
        let server = app.test_server();
        let _a = server.client("/market").unwrap();
        let mut raw = server.connect_raw();
        raw.write(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = String::from_utf8(raw.read().0).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(r#"{"encodings":0,"listeners":1}"#), "{response}");
    }
}
