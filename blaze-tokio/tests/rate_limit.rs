//! Per-connection rate limits trip at the configured rate.
//!
//! On a loaded machine messages written at once may reach the server
//! spread out; what may refill meanwhile is bounded by the time this side
//! saw pass, not assumed to be zero.

mod common;

use std::time::Duration;

use blaze_tokio::{App, Callbacks, RateLimit, RateLimitAction, WsConfig};
use common::*;
use tungstenite::Message;

const PER_SECOND: f64 = 20.0;
const BURST: u32 = 5;

fn app(action: RateLimitAction) -> App {
    let app = App::new();
    app.config(WsConfig::default().rate_limit(Some(RateLimit { per_second: PER_SECOND, burst: BURST, action })));
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
        let started = std::time::Instant::now();
        for i in 0..10 {
            client.write(Message::text(format!("m{i}"))).unwrap();
        }
        client.flush().unwrap();
        let replies: Vec<String> = (0..10).map(|_| next_text(&mut client)).collect();
        // The server handled all ten within this span (it began after
        // `started` and ended before the last reply arrived).
        let span = started.elapsed().as_secs_f64();
        let echoed: Vec<&String> = replies.iter().filter(|r| r.starts_with('m')).collect();
        let error = serde_json::json!({"type": "error", "error": "rate limit exceeded"});
        let errors = replies.iter().filter(|r| serde_json::from_str::<serde_json::Value>(r).ok() == Some(error.clone())).count();
        // The burst passes, first, plus at most what refilled meanwhile.
        let refilled = (span * PER_SECOND) as usize + 1;
        assert!(
            (BURST as usize..=BURST as usize + refilled).contains(&echoed.len()),
            "{} echoed in {span:.3} s: {replies:?}",
            echoed.len()
        );
        let burst: Vec<String> = (0..BURST).map(|i| format!("m{i}")).collect();
        assert!(echoed.iter().take(burst.len()).map(|s| s.as_str()).eq(burst.iter().map(String::as_str)), "the burst is the first messages: {replies:?}");
        assert_eq!(echoed.len() + errors, 10, "{replies:?}");
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
