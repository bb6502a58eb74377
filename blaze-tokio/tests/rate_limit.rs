//! Per-connection rate limits trip at the configured rate.

mod common;

use std::time::Duration;

use blaze_tokio::{App, Callbacks, RateLimit, RateLimitAction, WsConfig};
use common::*;
use tungstenite::Message;

fn app(action: RateLimitAction) -> App {
    let app = App::new();
    app.config(WsConfig::default().rate_limit(Some(RateLimit { per_second: 20.0, burst: 5, action })));
    app.ws(
        "/r",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.send(text);
        }),
    );
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_passes_then_excess_gets_error_messages() {
    let (addr, _server) = serve(&app(RateLimitAction::ErrorMessage)).await;
    blocking(move || {
        let mut client = connect(addr, "/r");
        for i in 0..10 {
            client.write(Message::text(format!("m{i}"))).unwrap();
        }
        client.flush().unwrap();
        let replies: Vec<String> = (0..10).map(|_| next_text(&mut client)).collect();
        let echoed = replies.iter().filter(|r| r.starts_with('m')).count();
        let errors = replies.iter().filter(|r| r.contains("rate limit exceeded")).count();
        // The burst of 5 (plus at most one token refilled meanwhile) passes.
        assert!((5..=6).contains(&echoed), "{replies:?}");
        assert_eq!(echoed + errors, 10);
        // Still open: after waiting for tokens, messages pass again.
        std::thread::sleep(Duration::from_millis(300));
        client.send(Message::text("later")).unwrap();
        assert_eq!(next_text(&mut client), "later");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_traffic_under_the_rate_never_trips() {
    let (addr, _server) = serve(&app(RateLimitAction::Close)).await;
    blocking(move || {
        let mut client = connect(addr, "/r");
        // 15 messages a second against a limit of 20 a second.
        for i in 0..20 {
            client.send(Message::text(format!("m{i}"))).unwrap();
            assert_eq!(next_text(&mut client), format!("m{i}"));
            std::thread::sleep(Duration::from_millis(66));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_action_closes_with_1008() {
    let (addr, _server) = serve(&app(RateLimitAction::Close)).await;
    blocking(move || {
        let mut client = connect(addr, "/r");
        for i in 0..20 {
            let _ = client.write(Message::text(format!("m{i}")));
        }
        let _ = client.flush();
        assert_eq!(expect_close(&mut client).0, 1008);
    })
    .await;
}
